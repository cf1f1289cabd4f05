"""The contract between a torch model and the code that trains, validates and serves it.

Every model is one of two kinds, each a base class here:

                  SequenceModel                                   PairModel
  trains on       windows of train/ (items, timestamps, targets)   (user_idx, item_idx) rows of its `train_shard`,
                  batches grouped by length                        `negatives_per_row` sampled negatives a row
  loss            next-item (losses.NextItemLoss, train.loss)      its own `pair_loss` (losses.pointwise_bce, .bpr)
                  over the tied item table `item_emb`
  scores          an evaluation row's history at its query time    the evaluation row's user
  item vectors    `item_emb`                                       its own `item_vectors` (LightGCN's propagated
                                                                   vectors, NCF's GMF table)

recsys_torch.trainer, .evaluation and .infer call only what `Recommender` declares, never a model's name or the
kind of its batches. A new model subclasses one of the two bases and is registered in recsys_torch.models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from torch import Tensor, nn

from recsys_torch.losses import NextItemLoss
from recsys_torch.runtime import trim_left_padding

if TYPE_CHECKING:
    from recsys_torch.config import TrainConfig


@dataclass
class TrainSplit:
    """What a model may ask of its training shard when it builds its loss."""
    rows: int
    target_counts: Callable[[], Tensor]  # how often each item is a target, [n_items + 1] (reads the shard)


class Recommender(nn.Module):
    """Scores the whole catalogue for a batch of evaluation rows (user_idx, items, timestamps, query_timestamp,
    seen_items, target_item): logits [B, n_items + 1], column 0 (padding) = -inf. Built from its config dataclass
    `cfg` (which has n_items) on the meta device, then materialised and `init_weights()` (models/__init__.py)."""
    train_shard: str                    # the shard folder it trains on
    train_columns: tuple[str, ...]      # the columns of a training batch
    length_column: str | None = None    # train.group_by_length: batches of rows of similar length in this column
    needs_graph = False                 # given the train graph (`set_graph`, recsys_torch.graph) before use
    # score(batch) reads batch["user_idx"] alone and nothing that differs between the test and validation lists:
    # recsys_torch.infer then scores each user once for both lists
    scores_by_user_only = False

    def init_weights(self) -> None:
        """Initialise every parameter from the global torch RNG (deterministic for a seed)."""
        raise NotImplementedError

    def negatives_per_row(self, tcfg: TrainConfig) -> int:
        """Negatives the trainer samples for each training row (batch["neg_items"], [B, n]); 0: none."""
        return 0

    def loss_name(self, tcfg: TrainConfig, on_gpu: bool) -> str:
        raise NotImplementedError

    def make_loss(self, tcfg: TrainConfig, on_gpu: bool, split: TrainSplit) -> nn.Module | None:
        """The loss module `training_loss` is given (None: the model's loss needs no state)."""
        raise NotImplementedError

    def training_loss(self, batch: dict[str, Tensor], loss: nn.Module | None) -> Tensor:
        raise NotImplementedError

    def trim(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch with what cannot change the result cut away (done before it goes to the device)."""
        return batch

    def score(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def item_vectors(self) -> Tensor:
        """[n_items + 1, D] (row 0 padding): the vectors recsys_torch.infer writes to `item_embeddings`."""
        raise NotImplementedError


class SequenceModel(Recommender):
    """A user's history in (`forward(items, timestamps, query_timestamps)` -> hidden [B, L, D]); an item's score is
    the dot product of the last hidden state with its row of the tied item table `item_emb`."""
    train_shard = "train"
    train_columns = ("items", "timestamps", "targets")
    length_column = "items"
    item_emb: nn.Embedding

    def loss_name(self, tcfg: TrainConfig, on_gpu: bool) -> str:
        return tcfg.resolved_loss(on_gpu)

    def make_loss(self, tcfg: TrainConfig, on_gpu: bool, split: TrainSplit) -> NextItemLoss:
        counts = split.target_counts()
        return NextItemLoss(self.loss_name(tcfg, on_gpu), self.cfg.n_items, tcfg.negatives, counts,
                            targets_per_row=float(counts.sum()) / max(split.rows, 1)).to(self.item_emb.weight.device)

    def training_loss(self, batch: dict[str, Tensor], loss: NextItemLoss) -> Tensor:
        hidden = self(batch["items"], batch["timestamps"])
        return loss.over_windows(hidden, self.item_emb.weight, batch["targets"])

    def trim(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return trim_left_padding(batch)  # left padding never changes a hidden state (the models' tests check it)

    def score(self, batch: dict[str, Tensor]) -> Tensor:
        return self.score_last(batch["items"], batch["timestamps"], batch["query_timestamp"])

    def score_last(self, items: Tensor, timestamps: Tensor | None, query_timestamps: Tensor | None = None) -> Tensor:
        """Scores of every item as the next one after the last position (at query_timestamps[B]):
        [B, n_items + 1] float32, column 0 = -inf."""
        last_hidden = self(items, timestamps, query_timestamps)[:, -1]
        logits = last_hidden.float() @ self.item_emb.weight.float().T
        logits[:, 0] = float("-inf")
        return logits

    def item_vectors(self) -> Tensor:
        return self.item_emb.weight


class PairModel(Recommender):
    """A user id in: trained on (user, positive item, sampled negatives) triples with its own pair loss; scores
    every item for a user (`score_users`)."""
    train_columns = ("user_idx", "item_idx")
    pair_loss_name: str

    def negatives_per_row(self, tcfg: TrainConfig) -> int:
        return tcfg.pair_negatives

    def loss_name(self, tcfg: TrainConfig, on_gpu: bool) -> str:
        return self.pair_loss_name

    def make_loss(self, tcfg: TrainConfig, on_gpu: bool, split: TrainSplit) -> None:
        return None

    def training_loss(self, batch: dict[str, Tensor], loss: None = None) -> Tensor:
        return self.pair_loss(batch["user_idx"], batch["item_idx"], batch["neg_items"])

    def pair_loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        """users[B], pos_items[B], neg_items[B, n_neg] -> the mean loss."""
        raise NotImplementedError

    def score(self, batch: dict[str, Tensor]) -> Tensor:
        return self.score_users(batch["user_idx"])

    def score_users(self, users: Tensor) -> Tensor:
        """Scores of every item for users[B]: [B, n_items + 1], column 0 = -inf."""
        raise NotImplementedError


__all__ = ["PairModel", "Recommender", "SequenceModel", "TrainSplit"]
