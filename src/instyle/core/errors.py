"""The one exception type users see: its message is printed as one line, without a traceback."""

from __future__ import annotations


class InstyleError(Exception):
    """An error whose message is shown to the user as one line, without a traceback."""
