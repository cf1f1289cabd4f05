"""The one order of equal scores, for every list made or scored: score descending, then `Ties.key` ascending.

The key follows the ETL's tie policy (etl.tie_break and its seed, recorded in <warehouse>/etl_report.json and the
shards' meta.json):
- `hash` (the default): a seeded hash of (user_idx, item_idx), so equal scores do not favour low ids (old titles)
  and each user's ties fall in another order;
- `movieId` (the older rule): item_idx itself, i.e. ties by ascending movieId as before the hash (item_idx is
  dense by ascending movieId).

The hash is one expression (`_hash`) evaluated unchanged on Python ints, numpy int64 arrays, torch int64 tensors and
Spark long Columns, so the three sides cannot drift: two rounds of `h = (h * A + x) mod P` followed by h -> h^5 mod P,
with P = 2^31 - 1 prime. Every operand stays below P < 2^31 and every product below 2^62: exact in int64 and in Spark
SQL's ANSI long arithmetic, where an overflow raises. x -> x^5 is a bijection mod P (gcd(5, P - 1) = 1), so for one
user the keys of distinct item_idx (< P) are distinct: the order is total without a further tie-break.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

P = (1 << 31) - 1
A_SEED, A_USER = 1_103_515_245, 69_069  # < P
TIE_BREAKS = ("movieId", "hash")
DEFAULT_RULE, DEFAULT_SEED = "hash", 42  # EtlConfig's defaults (a warehouse without etl_report.json)


def _pow5(h):
    h = h % P
    h2 = h * h % P
    return h2 * h2 % P * h % P


def _hash(users, items, seed: int):
    h = _pow5((seed % P) * A_SEED % P + users)  # users < 2^31: the sum stays < 2^32, reduced first
    return _pow5(h * A_USER % P + items)


@dataclass(frozen=True)
class Ties:
    rule: str = DEFAULT_RULE
    seed: int = DEFAULT_SEED

    def __post_init__(self):
        if self.rule not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {self.rule!r}")

    def numpy(self, users, items):
        """int64 keys of (user_idx, item_idx) pairs (broadcast)."""
        import numpy as np

        return self._key(np.asarray(users, np.int64), np.asarray(items, np.int64))

    def torch(self, users, items):
        """int64 keys of (user_idx, item_idx) tensors (broadcast), on their device."""
        return self._key(users.long(), items.long())

    def _key(self, users, items):
        return items + 0 * users if self.rule == "movieId" else _hash(users, items, self.seed)

    def column(self, user_col: str = "user_idx", item_col: str = "item_idx"):
        """The key as a Spark Column (long) of two integer columns."""
        from pyspark.sql import functions as F

        items = F.col(item_col).cast("long")
        return items if self.rule == "movieId" else _hash(F.col(user_col).cast("long"), items, self.seed)

    @classmethod
    def of_report(cls, report: dict | None) -> "Ties":
        """The tie policy an ETL report (etl_report.json) or a shard meta.json records; the defaults without one."""
        report = report or {}
        config = report.get("config") if isinstance(report.get("config"), dict) else {}  # an older report's layout
        rule = report.get("tie_break", config.get("tie_break")) or DEFAULT_RULE
        seed = report.get("seed", config.get("seed"))
        return cls(rule, DEFAULT_SEED if seed is None else int(seed))

    @classmethod
    def of_warehouse(cls, warehouse) -> "Ties":
        """The tie policy of the ETL that wrote `warehouse` (<warehouse>/etl_report.json)."""
        from recsys_core import storage

        text = storage.read_bytes(storage.join(str(warehouse), "etl_report.json"))
        return cls.of_report(json.loads(text) if text is not None else None)
