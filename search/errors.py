"""The two kinds of failure.

`SpaceError` (bad space file or command-line input) stops everything before Ray starts, with one
line that names the problem. A trial that raises is recorded as FAILED and the study goes on.
"""


class SpaceError(ValueError):
    """The space file or a command-line value is unusable; the study cannot start."""
