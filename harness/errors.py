"""Errors meant for the user: the CLI prints their message as one line and exits 2."""


class HarnessError(RuntimeError):
    """Base class; the message must name the file (or option) and the problem."""

    user_facing = True
