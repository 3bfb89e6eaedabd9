"""User-facing errors.

``MistError`` is raised for problems a user can fix (a missing data directory, a corrupt file, an
impossible parameter). The command-line interface prints its message on one line and exits with
status 2 instead of showing a traceback. Programming errors stay ordinary exceptions.
"""


class MistError(Exception):
    """An error whose message is meant for the user, printed without a traceback by ``mist``."""


class DataError(MistError, ValueError):
    """Missing, corrupt or inconsistent data, on disk or handed over in memory."""


class ArgumentError(MistError, ValueError):
    """A number or name given to a command or to the Python API that is out of range."""


class NonFiniteLoss(MistError):
    """A training loss or the keypoints became NaN or infinite: training diverged.

    The run stops and keeps its last good checkpoint.
    """


class MistWarning(UserWarning):
    """Something a user should know that did not stop the command (``mist`` prints one line)."""
