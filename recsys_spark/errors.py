class RecsysError(Exception):
    """An error the user can act on (bad input file, missing table, bad flag): printed as one line, exit code 2."""

    exit_code = 2


class InputError(RecsysError):
    """Input data that cannot be read at all: names the file (and line and field where known)."""
