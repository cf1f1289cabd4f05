"""The API's response bodies (the OpenAPI schema is generated from these)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class Error(BaseModel):
    detail: str = Field(description="one line saying what was wrong")


class PublishedRunInfo(BaseModel):
    run_id: str
    run_date: dt.date
    published_at: dt.datetime


class Health(BaseModel):
    """What is being served and how fresh it is. A 503 (with the reason) instead when nothing can be served."""

    status: str = Field(description="`ok`, or `stale` when the last reload failed and the previous snapshot is "
                                    "still served (see last_error)")
    run_date: dt.date | None = Field(description="the newest run date of the lists being served")
    committed_at: dt.datetime | None = Field(description="the newest commit of the served tables")
    age_s: float | None = Field(description="seconds since that commit")
    loaded_at: dt.datetime = Field(description="when the served snapshot was loaded")
    checked_at: dt.datetime | None = Field(description="the last check of the tables' versions")
    last_error: str | None = Field(description="the last reload error, one line (null: none since start-up)")
    last_error_at: dt.datetime | None
    models: int = Field(description="models with recommendations being served")
    users: int
    movies: int = Field(description="movies in `items`")
    reloads: int = Field(description="new snapshots picked up since start-up")
    versions: dict[str, int | None] = Field(description="Delta version of each watched table")
    published_run: PublishedRunInfo | None = Field(
        description="the published run served (the newest `runs` row); null: nothing published, latest versions")


class Metric(BaseModel):
    split: str
    metric: str
    k: int | None
    value: float
    ci_low: float | None
    ci_high: float | None


class ModelInfo(BaseModel):
    name: str
    family: str
    summary: str
    run_date: dt.date = Field(description="the run date of the list served (by default): its latest, or the one its "
                                          "last published run names")
    run_id: str
    run_dates: list[dt.date]
    users: int = Field(description="users with a list in the latest run")
    max_k: int
    similar_items: bool = Field(description="whether /items/{movieId}/similar can use this model")
    metrics_run_date: dt.date | None
    metrics: list[Metric]
    published_run_id: str | None = Field(description="the published run whose decision serves this list (null: "
                                                     "nothing published, the latest list)")
    published: bool | None = Field(description="whether that run published this model's list of its night; false: "
                                               "the regression gate held it back and `run_date` is its last "
                                               "published list")
    reason: str | None = Field(description="the gate's decision, one line")


class Models(BaseModel):
    models: list[ModelInfo]
    report_plots: list[str] = Field(description="plot names of the latest comparison report, under /report/")


class Movie(BaseModel):
    movieId: int
    title: str
    genres: list[str]
    year: int | None


class MovieSearch(BaseModel):
    movies: list[Movie] = Field(description="titles that start with the text first, then by title")
    total: int = Field(description="movies whose title contains the text")


class RankedMovie(Movie):
    rank: int
    score: float = Field(description="always finite: list rows with a NaN or infinite score are not served")
    held_out: bool = Field(description="the user's held-out test item")


class RatedMovie(Movie):
    rating: float
    timestamp: int


class Recommendations(BaseModel):
    userId: int
    model: str
    run_date: dt.date | None = Field(description="the run's date; null for the fallback")
    run_id: str | None
    fallback: str | None = Field(description="null, or `popularity` when the run did not cover this user: the "
                                             "most-rated train movies not in the user's shown history")
    k: int
    items: list[RankedMovie]
    held_out: RatedMovie | None = Field(description="the user's test item (leave-last-out)")
    held_out_rank: int | None = Field(description="its rank in `items`, when the list found it")
    history: list[RatedMovie] = Field(description="the user's last rated movies before the test item, newest first")


class User(BaseModel):
    userId: int
    n_interactions: int


class Users(BaseModel):
    users: list[User]
    total: int = Field(description="users whose id starts with the prefix")


class SimilarMovie(Movie):
    rank: int
    similarity: float = Field(description="cosine similarity of the two item vectors")


class Similar(BaseModel):
    model: str
    source: str = Field(description="the table the vectors came from")
    run_date: dt.date | None
    item: Movie
    items: list[SimilarMovie]


class DriftRow(BaseModel):
    kind: str = Field(description="`input` (the interactions) or `output` (one model's list)")
    model: str | None
    metric: str
    k: int | None
    value: float | None
    previous: float | None = Field(description="the same measure before, where it has one")
    ci_low: float | None = Field(description="ndcg_change: the paired bootstrap interval over the test users")
    ci_high: float | None
    compared_to: str | None = Field(description="what tonight was compared with")
    threshold: float | None
    warning: str | None = Field(description="the warning line when the value is beyond its threshold")


class Drift(BaseModel):
    """One run date of the `drift` table (docs/SCHEMAS.md)."""

    run_date: dt.date
    run_dates: list[dt.date] = Field(description="every run date the drift table has, newest first")
    rows: list[DriftRow]
    warnings: list[str] = Field(description="the rows' warning lines")


# -- real-time lists (recsys_serve.realtime) ----------------------------------------------------------------------

MAX_HISTORY = 10_000
MAX_BATCH = 256
MAX_ID = 2**63 - 1  # ids are Delta `long`s
MovieId = Annotated[StrictInt, Field(ge=0, le=MAX_ID)]
Seconds = Annotated[StrictInt, Field(ge=-2**62, le=2**62)]  # room for the + 1 s of the default query time


class HistoryRequest(BaseModel):
    """One history to score now (docs/SERVING.md, Real-time lists)."""
    model_config = ConfigDict(extra="forbid")

    history: list[MovieId] = Field(default_factory=list, max_length=MAX_HISTORY,
                                     description="movieIds, oldest first (appended after the user's stored history "
                                                 "with userId)")
    timestamps: list[Seconds] | None = Field(None, max_length=MAX_HISTORY,
                                               description="seconds since 1970, one per history item, non-decreasing")
    query_timestamp: Seconds | None = Field(None, description="the time the list is for (default: the last "
                                                               "timestamp + 1 s)")
    userId: StrictInt | None = Field(None, ge=0, le=MAX_ID, description="start from this user's stored train + validation "
                                                             "history")


class RealtimeRequest(HistoryRequest):
    model: str = Field(description="sasrec, ss4rec, popularity, markov, ar2 or itemcf")
    k: StrictInt = Field(10, ge=1, le=100, description="list length")


class RealtimeBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    k: StrictInt = Field(10, ge=1, le=100)
    requests: list[HistoryRequest] = Field(min_length=1, max_length=MAX_BATCH)


class ScoredMovie(Movie):
    rank: int
    score: float = Field(description="always finite")


class RealtimeList(BaseModel):
    model: str
    userId: int | None = Field(description="the user whose stored history the list started from")
    k: int
    source: str = Field(description="the checkpoint (models/<model>/published.pt or best.pt) or the tables")
    loaded_at: dt.datetime | None = Field(description="when that checkpoint or table was loaded")
    history_len: int = Field(description="movies in the history (stored + posted)")
    used: int = Field(description="movies the model read (a sequence model's last max_len, AR(2)'s last two ...)")
    items: list[ScoredMovie] = Field(description="best first; every movie of the history excluded")


class RealtimeBatch(BaseModel):
    model: str
    k: int
    lists: list[RealtimeList] = Field(description="one per request, in order")
