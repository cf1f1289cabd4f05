"""The config builder is recsys_core.config's (one for every package); `from_mapping` is its old name here."""
from recsys_core.config import build as from_mapping

__all__ = ["from_mapping"]
