"""Real-time lists (POST /recommendations): a model's top-k for a history posted now, the history excluded.

- Sequence models (SASRec, SS4Rec) score the history with the checkpoint `recsys topn` would use:
  models/<model>/published.pt when it exists, else best.pt (recsys_torch.realtime, imported on the first such
  request: the server imports no torch until then). Each model is loaded once; every `check_interval` seconds a
  request looks at the file (inode, mtime, size) and, when it changed, one request loads the new one while the
  others keep using the old; the new model is swapped in by one assignment, so a request in flight finishes on
  the model it started with. A checkpoint that cannot be loaded (half copied, another code version) leaves the
  previous one served and is tried again at the next check.
- Count models answer from their tables, as `recsys baselines` scores a stored history (recsys_serve.count_models).
- Equal scores are ordered as in every list (recsys_core.ties, the policy of the warehouse's etl_report.json), by
  the user_idx of the request's userId, 0 for a history posted without one.
- Every other model (ALS, NCF, LightGCN, genre, hybrid, EASE, the ensemble) scores users it was fitted on, not a
  new history: a 422 that says so.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from recsys_core import catalogue
from recsys_serve.count_models import CountModels, table_sources
from recsys_serve.errors import BadRequest, NotFound, Unavailable
from recsys_serve.reader import Warehouse

log = logging.getLogger("recsys_serve")

MAX_HISTORY = 10_000  # a posted history longer than this is refused before anything else (sequence models: max_len)


@dataclass(frozen=True)
class History:
    """One request's history: movieIds oldest first, their timestamps (None: none given), the query time, the
    userId it started from (and its user_idx, 0 without one), and how many of its items were posted (the rest are
    the user's stored history)."""
    movie_ids: np.ndarray
    timestamps: np.ndarray | None
    query_timestamp: int | None
    user_id: int | None
    posted: int
    user_idx: int = 0


def sequence_models() -> list[str]:
    """The catalogue's models a torch checkpoint scores a history with (Model.realtime == ())."""
    return [m for m in catalogue.realtime_models() if catalogue.MODELS[m].realtime == ()]


def can_score(model: str) -> bool:
    return model in catalogue.realtime_models()


def check_model(name: str) -> catalogue.Model:
    try:
        model = catalogue.find(name)
    except Exception:  # noqa: BLE001 - the catalogue's one message
        raise BadRequest(str(catalogue.unknown_model(name, "model"))) from None
    if not can_score(name):
        raise BadRequest(f"model: {name!r} cannot score a new history ({model.summary}: it scores the users it was "
                         f"fitted on); models that can: {', '.join(catalogue.realtime_models())}")
    return model


# -- sequence models ---------------------------------------------------------------------------------------------

class _Slot:
    def __init__(self):
        self.live = None  # recsys_torch.realtime.LiveModel
        self.checked = 0.0
        self.lock = threading.Lock()
        self.last_error: str | None = None
        self.failed: tuple | None = None  # (path, key) of a checkpoint that could not be loaded: not retried


class SequenceModels:
    """The loaded sequence models of one warehouse, each swapped when its checkpoint file changes."""

    def __init__(self, root, check_interval: float = 1.0, threads: int | None = None):
        self.root = root
        self.check_interval = check_interval
        self.threads = threads
        self._slots = {name: _Slot() for name in sequence_models()}
        self.swaps = 0

    def get(self, name: str):
        from recsys_torch import realtime as rt  # torch: imported on the first sequence-model request

        slot = self._slots[name]
        live, now = slot.live, time.monotonic()
        if live is not None and now - slot.checked < self.check_interval:
            return live
        path = rt.checkpoint_path(self.root, name)
        if path is None:
            if live is not None:
                return live  # the file went away under a served model: keep serving it
            raise NotFound(f"model: {name!r} has no checkpoint in this warehouse (models/{name}/published.pt or "
                           f"best.pt; run `recsys train --model {name}`)")
        try:
            key = rt.file_key(path)
        except OSError:
            return self._first_or_current(live, name)
        if live is not None and ((live.path, live.key) == (path, key) or slot.failed == (path, key)):
            slot.checked = now
            return live
        # Changed (or never loaded): one request loads, the others keep the current model meanwhile.
        if not slot.lock.acquire(blocking=live is None):
            return live
        try:
            if slot.live is not None and slot.live is not live:
                return slot.live  # another request swapped it while this one waited
            try:
                fresh = rt.LiveModel.load(self.root, name, path, threads=self.threads)
            except (rt.RecsysError, OSError) as exc:
                slot.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                slot.failed = (path, key)  # a file still being written gets a new key when it is complete
                if live is None:
                    raise Unavailable(f"model: {name}'s checkpoint cannot be loaded: {slot.last_error}") from None
                log.warning("%s: keeping the served model, the new checkpoint cannot be loaded: %s", name,
                            slot.last_error)
                return live
            slot.live, slot.checked = fresh, time.monotonic()
            if live is not None:
                self.swaps += 1
                log.info("%s: serving %s (replaced)", name, path)
            return fresh
        finally:
            slot.lock.release()

    @staticmethod
    def _first_or_current(live, name: str):
        if live is None:
            raise Unavailable(f"model: {name}'s checkpoint cannot be read right now")
        return live


# -- one request -------------------------------------------------------------------------------------------------

class Realtime:
    """Turns posted histories into lists: checks them (a BadRequest naming the field), adds a userId's stored
    history, and asks the model."""

    def __init__(self, warehouse: Warehouse, check_interval: float = 1.0, threads: int | None = None):
        self.warehouse = warehouse
        self.sequence = SequenceModels(warehouse.root, check_interval, threads)
        self.counts = CountModels(warehouse)

    def stored_history(self, user_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's train + validation movieIds and timestamps by seq: the history `recsys topn` scored."""
        rows = self.warehouse.query("SELECT movieId, timestamp FROM {i} WHERE userId = ? AND split IN "
                                    "('train', 'validation') ORDER BY seq", [user_id], i="interactions")
        return np.asarray(rows["movieId"], np.int64), np.asarray(rows["timestamp"], np.int64)

    def user_index(self, user_id: int) -> int:
        rows = self.warehouse.query("SELECT user_idx FROM {u} WHERE userId = ?", [user_id], u="users")
        return int(rows["user_idx"][0]) if len(rows["user_idx"]) else 0

    def history(self, request, snapshot, field: str = "") -> History:
        """The request's history, checked: `field` prefixes the names in the messages (a batch's requests[i].)."""
        posted = np.asarray(request.history, np.int64)
        stamps = None if request.timestamps is None else np.asarray(request.timestamps, np.int64)
        if stamps is not None and len(stamps) != len(posted):
            raise BadRequest(f"{field}timestamps: {len(stamps)} values for {len(posted)} history items (one "
                             f"timestamp per movie)")
        unknown = posted[snapshot.movies.positions(posted) < 0]
        if len(unknown):
            shown = ", ".join(str(m) for m in dict.fromkeys(unknown.tolist()))
            raise BadRequest(f"{field}history: unknown movieId(s) {_clip(shown)} (not in the items table)")
        movie_ids, user_idx = posted, 0
        if request.userId is not None:
            if snapshot.histories.position(request.userId) is None:
                raise NotFound(f"{field}userId: unknown user {request.userId}")
            stored, stored_ts = self.stored_history(request.userId)
            user_idx = self.user_index(request.userId)
            if stamps is None and len(posted):  # posted without times: rated now
                stamps = np.full(len(posted), int(time.time()), np.int64)
            movie_ids = np.concatenate([stored, posted])
            stamps = np.concatenate([stored_ts, stamps if stamps is not None else np.zeros(0, np.int64)])
        if len(movie_ids) == 0:
            raise BadRequest(f"{field}history: empty; give at least one movieId (or a userId that has a stored "
                             f"history)")
        if stamps is not None and len(stamps) > 1:
            back = np.flatnonzero(np.diff(stamps) < 0)
            if len(back):
                i = int(back[0]) + 1 - (len(stamps) - len(posted))
                where = f"[{i}]" if i >= 0 else " (the first posted one is before the stored history's last)"
                raise BadRequest(f"{field}timestamps{where}: not non-decreasing ({stamps[back[0] + 1]} after "
                                 f"{stamps[back[0]]})")
        if request.query_timestamp is not None and stamps is not None and request.query_timestamp < stamps[-1]:
            raise BadRequest(f"{field}query_timestamp: {request.query_timestamp} is before the last timestamp "
                             f"{stamps[-1]}")
        return History(movie_ids, stamps, request.query_timestamp, request.userId, len(posted), user_idx)

    def lists(self, model: str, requests: list, k: int, snapshot, batch: bool = False) -> list[dict]:
        check_model(model)
        histories = [self.history(r, snapshot, f"requests[{i}]." if batch else "") for i, r in enumerate(requests)]
        if model in sequence_models():
            return self._sequence_lists(model, histories, k, snapshot, batch)
        found = [self.counts.top_k(model, self.counts.space().indices(h.movie_ids), k, h.user_idx)
                 for h in histories]
        tiers = table_sources(model)[:-1]  # the last is interactions: the popularity every list is padded with
        source = " + ".join(tiers) + " + popularity" if tiers else "interactions (train counts)"
        loaded = self.counts.loaded_at("items")
        return [_body(snapshot, model, h, k, ids, scores, used, source, loaded)
                for h, (ids, scores, used) in zip(histories, found)]

    def _sequence_lists(self, model: str, histories: list[History], k: int, snapshot, batch: bool) -> list[dict]:
        from recsys_torch.realtime import Query

        live = self.sequence.get(model)  # this request's model, whatever a swap does meanwhile
        queries = []
        for i, h in enumerate(histories):
            if h.posted > live.max_len:
                name = f"requests[{i}].history" if batch else "history"
                raise BadRequest(f"{name}: {h.posted} items, more than {model}'s max_len {live.max_len} (the "
                                 f"longest history it reads)")
            idx = live.indices(h.movie_ids)
            known = idx > 0
            queries.append(Query(idx[known], None if h.timestamps is None else h.timestamps[known],
                                 h.query_timestamp, idx[known], h.user_idx))
        empty = [i for i, q in enumerate(queries) if len(q.items) == 0]
        if empty:
            name = f"requests[{empty[0]}].history" if batch else "history"
            raise BadRequest(f"{name}: none of its movies is in {model}'s item map (movies nobody rated in train)")
        try:
            found = live.top_k(queries, k)
        except Exception as exc:  # noqa: BLE001 - a non-finite forward: one line, 503
            raise Unavailable(f"model: {model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
                from None
        source = str(live.path.relative_to(self.warehouse.root)) if live.path.is_relative_to(self.warehouse.root) \
            else str(live.path)
        return [_body(snapshot, model, h, k, ids, scores, min(len(q.items), live.max_len), source, live.loaded_at)
                for h, q, (ids, scores) in zip(histories, queries, found)]


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(",", 1)[0] + ", ..."


def _body(snapshot, model: str, h: History, k: int, movie_ids: np.ndarray, scores: np.ndarray, used: int,
          source: str, loaded_at: float | None) -> dict:
    import datetime as dt

    cat = snapshot.movies
    positions = cat.positions(movie_ids)
    items = [{**cat.movie(int(p)), "rank": rank, "score": float(s)}
             for rank, (p, s) in enumerate(((p, s) for p, s in zip(positions.tolist(), scores.tolist())
                                            if p >= 0 and np.isfinite(s)), start=1)]
    return {"model": model, "userId": h.user_id, "k": k, "source": source,
            "loaded_at": None if loaded_at is None else dt.datetime.fromtimestamp(loaded_at, dt.timezone.utc),
            "history_len": int(len(h.movie_ids)), "used": int(used), "items": items}
