"""Kept so that tests importing C{tests._waiting} keep working; the home is L{tests._support.waiting}."""

from ._support.waiting import coroutine, until  # noqa: F401
