"""The API's response bodies (the OpenAPI schema is generated from these)."""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


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
