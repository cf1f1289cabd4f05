"""`recsys generate --out DIR [--users N --items N --ratings N --seed S --corrupt-fraction F]`.

Writes MovieLens-25M-shaped ratings.csv, movies.csv, tags.csv, links.csv (+ README.txt, corruptions.json,
SHA256SUMS). Defaults are ML-25M's size. With `--as events [--layout parquet|delta|csv]` the same set as an
e-commerce event log (recsys_data/events.py): `DIR/events` and `DIR/items.csv` (the MovieLens files in
`DIR/movielens`), and the `etl.*` settings that read it. Runs as `python jobs/generate.py` or `spark-submit jobs/generate.py` too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import guarded  # noqa: E402
from recsys_data.generate import GeneratorConfig, generate  # noqa: E402


class _OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; one line is enough
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    d = GeneratorConfig()
    p = _OneLineErrors(prog="recsys generate", description="Write MovieLens-25M-shaped CSVs (default size: ML-25M).")
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--users", type=int, default=d.n_users, help=f"number of users (default {d.n_users:,})")
    p.add_argument("--items", type=int, default=d.n_items, help=f"number of movies (default {d.n_items:,})")
    p.add_argument("--ratings", type=int, default=d.n_ratings, help=f"exact number of ratings (default {d.n_ratings:,})")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed: same seed, same bytes")
    p.add_argument("--corrupt-fraction", type=float, default=0.0,
                   help="insert about this fraction of bad ratings rows, every reject class (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--as", dest="shape", choices=["movielens", "events"], default="movielens",
                   help="movielens (default) or events: an event log with an item table")
    p.add_argument("--layout", choices=["parquet", "delta", "csv"], default="parquet",
                   help="with --as events: Parquet part files (default), a Delta table or one CSV file")
    return p


@guarded
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.shape == "events" and args.corrupt_fraction:
        raise SystemExit("error: --as events writes clean logs; --corrupt-fraction is for the MovieLens files")
    movielens = Path(args.out) / "movielens" if args.shape == "events" else Path(args.out)
    summary = generate(movielens, n_users=args.users, n_items=args.items, n_ratings=args.ratings, seed=args.seed,
                       corrupt_fraction=args.corrupt_fraction, progress=not args.quiet and args.ratings >= 1_000_000)
    print(f"wrote {summary['out_dir']}: {summary['ratings']:,} ratings by {summary['users']:,} users of "
          f"{summary['movies']:,} movies ({summary['rated_movies']:,} rated), {summary['tags']:,} tags, "
          f"{summary['bad_ratings_rows']:,} bad ratings rows, {summary['bad_movies_rows']:,} bad movies rows")
    if args.shape == "events":
        from recsys_data.events import write_events

        events = write_events(movielens, args.out, args.layout)
        print(f"wrote {events['log']} ({events['events']:,} events, {events['layout']}) and {events['items']}; "
              f"read it with: {' '.join(events['settings'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
