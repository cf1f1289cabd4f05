"""recsys_spark's errors are recsys_core's (one type for every package)."""
from recsys_core.errors import ConfigError, InputError, RecsysError

__all__ = ["ConfigError", "InputError", "RecsysError"]
