"""The ETL's input guard: a new load is compared with the one the warehouse holds before anything is replaced.

A nightly load that suddenly has far fewer ratings, users or movies, or that refuses a large share of its rows, is
almost always a broken export (a header-only file, a truncated copy, a changed format), not the catalogue changing
overnight. Over an existing load the ETL refuses it (RecsysError: one line, exit 2) before its first commit, so
every table keeps its Delta version. The first load of a warehouse is never refused; a deliberate change is let
through with `etl.max_shrink=1.0` (any shrink) or `etl.max_reject_fraction=1.0` (any reject share).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recsys_spark.delta import read_arrow, table_exists, table_path, table_rows
from recsys_core.errors import RecsysError

# What "shrinks" is measured on: the accepted ratings, the users, the movies (items) and those anyone rated.
MEASURES = {"interactions": "interactions", "users": "users", "items": "movies", "rated_items": "rated movies"}
DELIBERATE_REJECTS = ("k-core", "repeat")  # configured drops and an event log's repeats, not bad input


class LoadRefused(RecsysError):
    """A load that would replace the warehouse's tables with much less, or with mostly refused rows."""


@dataclass(frozen=True)
class LoadCounts:
    interactions: int
    users: int
    items: int
    rated_items: int
    reject_fractions: dict[str, float]  # input file -> rows rejected (k-core drops aside) / input rows


def reject_fraction(input_rows: int, rejected_by_reason: dict[str, int]) -> float:
    refused = sum(n for reason, n in rejected_by_reason.items() if reason not in DELIBERATE_REJECTS)
    return refused / input_rows if input_rows else 0.0


def _last_reject_fractions(warehouse: Path) -> dict[str, float]:
    path = table_path(warehouse, "etl_report")
    if not table_exists(path):
        return {}
    report = read_arrow(path).to_pylist()
    inputs = {r["file"]: r["rows"] for r in report if r["category"] == "input"}
    rejected: dict[str, dict[str, int]] = {}
    for r in report:
        if r["category"] == "rejected" and r["reason"]:
            rejected.setdefault(r["file"], {})[r["reason"]] = r["rows"]
    return {f: reject_fraction(n, rejected.get(f, {})) for f, n in inputs.items()}


def last_load(warehouse: str | Path) -> LoadCounts | None:
    """The counts of the load the warehouse holds now; None when it holds none (the first load)."""
    warehouse = Path(warehouse)
    if not all(table_exists(table_path(warehouse, t)) for t in ("interactions", "users", "items")):
        return None
    item_idx = read_arrow(table_path(warehouse, "items"), columns=["item_idx"]).column("item_idx")
    return LoadCounts(
        interactions=table_rows(table_path(warehouse, "interactions")),
        users=table_rows(table_path(warehouse, "users")),
        items=len(item_idx),
        rated_items=len(item_idx) - item_idx.null_count,
        reject_fractions=_last_reject_fractions(warehouse))


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def refusals(new: LoadCounts, last: LoadCounts | None, max_shrink: float,
             max_reject_fraction: float) -> dict[str, str]:
    """{setting: what `new` breaks against `last`} (empty: the load may replace the tables)."""
    if last is None:
        return {}
    found = {}
    shrunk = [f"{label} {getattr(last, name):,} -> {getattr(new, name):,} "
              f"(-{_percent(1 - getattr(new, name) / getattr(last, name))})"
              for name, label in MEASURES.items()
              if getattr(new, name) < getattr(last, name) * (1 - max_shrink)]
    if shrunk:
        found["etl.max_shrink"] = (f"the load shrinks {', '.join(shrunk)}, more than etl.max_shrink={max_shrink:g} "
                                   f"allows")
    rejected = [f"{file} {_percent(fraction)} (last load {_percent(last.reject_fractions.get(file, 0.0))})"
                for file, fraction in new.reject_fractions.items() if fraction > max_reject_fraction]
    if rejected:
        found["etl.max_reject_fraction"] = (f"rows rejected: {', '.join(rejected)}, more than "
                                            f"etl.max_reject_fraction={max_reject_fraction:g} allows")
    return found


def check_load(warehouse: str | Path, new: LoadCounts, max_shrink: float, max_reject_fraction: float) -> None:
    """Refuse (LoadRefused, one line) a load that must not replace the warehouse's current one."""
    found = refusals(new, last_load(warehouse), max_shrink, max_reject_fraction)
    if found:
        overrides = " ".join(f"{setting}=1.0" for setting in found)
        raise LoadRefused(f"etl refused to replace the tables in {warehouse}: {'; '.join(found.values())}. Nothing "
                          f"was written; check the input, or re-run with {overrides} if the change is intended")
