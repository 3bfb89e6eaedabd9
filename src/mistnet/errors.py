"""User-facing errors.

``MistError`` is raised for problems a user can fix (a missing data directory, a corrupt file, an
impossible parameter). The command-line interface prints its message on one line and exits with
status 2 instead of showing a traceback. Programming errors stay ordinary exceptions.
"""


class MistError(Exception):
    """An error whose message is meant for the user, printed without a traceback by ``mist``."""


class DataError(MistError, ValueError):
    """Missing, corrupt or inconsistent data on disk."""


class NonFiniteLoss(MistError):
    """A training loss became NaN or infinite; the run stops and keeps its last good checkpoint."""
