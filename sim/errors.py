"""The errors a user can fix: each message names the problem and the fix.

`ppafl` prints them as one line and exits with status 2; anything else is an internal
error. Every layer raises its own subclass.
"""

from __future__ import annotations

__all__ = ["PpaflError", "ScenarioError"]


class PpaflError(ValueError):
    """A problem with what the user asked for (input, resources, a plugin); the message says how to fix it."""


class ScenarioError(PpaflError):
    """A scenario file or override is invalid; the message says where and how to fix it."""
