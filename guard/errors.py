"""Errors raised by the guard.

::

    GuardError
      ConfigurationError    a missing, unknown or unsafe setting; raised at start-up
"""

from __future__ import annotations


class GuardError(Exception):
    """Base class for the guard's own errors."""


class ConfigurationError(GuardError, ValueError):
    """A setting is missing, unknown or unsafe; the message names it."""
