"""Errors of the learning side, in a module that imports nothing heavy (the CLI catches them)."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data set could not be loaded: unknown name, or missing/bad files."""
