class RecsysError(Exception):
    """An error the user can act on (missing shards, bad config): printed as one line, exit code 2."""

    exit_code = 2
