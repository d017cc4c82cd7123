"""The one exception type users see: a sentence that names the problem and the fix."""


class GancheckError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits with status 2."""
