"""The one error type: an error the user can act on, printed as one line with exit code 2 (jobs.common.guarded)."""


class RecsysError(Exception):
    """An error the user can act on (bad input file, missing table or shards, bad flag): one line, exit code 2."""

    exit_code = 2


class ConfigError(RecsysError, ValueError):
    """A config file, section, key or value that cannot be used; the message names the file or `section.key`.

    Also a ValueError, so that code which builds a config inside `except ValueError` keeps catching it."""


class InputError(RecsysError):
    """Input data that cannot be read at all: names the file (and line and field where known)."""
