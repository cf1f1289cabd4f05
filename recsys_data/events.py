"""A generated MovieLens set rewritten as an e-commerce event log (`recsys generate --as events`): what a data
engineer's lake holds, for trying the `events` input format at any size.

Each rating becomes one event of the RetailRocket log's shape (`timestamp` in milliseconds, `visitorid`, `event`,
`itemid`): 4.5 stars and up a `transaction`, 3.5 and up an `addtocart`, else a `view`; the movies become an item
table (`itemid`, `title`, `categories`, comma-separated). The log is written as Parquet part files, a Delta table or
one CSV file. Read back with the settings `EVENTS_SETTINGS` names (printed by `recsys generate`).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

LAYOUTS = ("parquet", "delta", "csv")
EVENT_WEIGHTS = {"view": 1, "addtocart": 3, "transaction": 5}
EVENTS_SETTINGS = ["etl.columns.user=visitorid", "etl.columns.item=itemid", "etl.columns.timestamp=timestamp",
                   "etl.columns.timestamp_unit=ms", "etl.columns.event=event",
                   *(f"etl.event_weights.{event}={weight}" for event, weight in EVENT_WEIGHTS.items())]


def item_settings(items_csv: Path) -> list[str]:
    return [f"etl.items.path={Path(items_csv).resolve()}", "etl.items.id=itemid", "etl.items.title=title",
            "etl.items.genres=categories", "etl.items.genre_separator=,"]


def _events(ratings: pa.Table) -> pa.Table:
    stars = ratings.column("rating")
    event = pc.if_else(pc.greater_equal(stars, 4.5), "transaction",
                       pc.if_else(pc.greater_equal(stars, 3.5), "addtocart", "view"))
    return pa.table({"timestamp": pc.multiply(ratings.column("timestamp").cast(pa.int64()), 1000),
                     "visitorid": ratings.column("userId"), "event": event, "itemid": ratings.column("movieId")})


def write_events(movielens_dir: str | Path, out: str | Path, layout: str = "parquet", parts: int = 4) -> dict:
    """The ratings.csv and movies.csv in `movielens_dir` as `out/events` (the log) and `out/items.csv`."""
    src, out = Path(movielens_dir), Path(out)
    ratings = pacsv.read_csv(src / "ratings.csv",
                             convert_options=pacsv.ConvertOptions(column_types={"rating": pa.float64()}))
    events = _events(ratings)
    log = out / ("events.csv" if layout == "csv" else "events")
    if layout == "csv":
        pacsv.write_csv(events, log)
    elif layout == "delta":
        import deltalake

        deltalake.write_deltalake(str(log), events, mode="overwrite")
    else:
        log.mkdir(parents=True, exist_ok=True)
        step = -(-events.num_rows // parts)
        for i in range(parts):
            pq.write_table(events.slice(i * step, step), log / f"part-{i:05d}.parquet")
    movies = pacsv.read_csv(src / "movies.csv")
    categories = pc.replace_substring(movies.column("genres"), "|", ",")
    items = out / "items.csv"
    pacsv.write_csv(pa.table({"itemid": movies.column("movieId"), "title": movies.column("title"),
                              "categories": categories}), items)
    return {"log": str(log), "items": str(items), "events": events.num_rows, "layout": layout,
            "settings": [*EVENTS_SETTINGS, *item_settings(items)]}
