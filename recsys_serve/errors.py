"""What a user of `recsys serve` can get wrong, as one line: exit 2 on the command line, a 4xx in the API."""
from __future__ import annotations

from recsys_core.errors import RecsysError


class ServeError(RecsysError):
    """The one error type's serving branch: a subclass says which HTTP status it becomes."""


class NotFound(ServeError):
    """A user, movie, model or run date the warehouse does not have (404)."""


class BadRequest(ServeError):
    """A request value that can never be right (422)."""


class Unavailable(ServeError):
    """Nothing can be served for the request right now (503): no snapshot loaded yet, or a table that cannot be
    read; the message names the reason."""
