"""recsys_torch's errors are recsys_core's (one type for every package)."""
from recsys_core.errors import ConfigError, RecsysError

__all__ = ["ConfigError", "RecsysError"]
