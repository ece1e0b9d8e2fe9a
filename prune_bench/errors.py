"""Errors prune-bench raises on purpose.

A :class:`UserError` is a mistake the user can fix (a missing video, an unknown strategy, a keep
outside (0, 1]); the CLI prints its message as one line and exits with code 2, without a traceback.
"""

from __future__ import annotations


class PruneBenchError(Exception):
    """Base class of every error prune-bench raises on purpose."""


class UserError(PruneBenchError):
    """A mistake in the user's input; the message says what is wrong and how to fix it."""


class RunIncomplete(PruneBenchError):
    """A run finished what it could, but some items failed (each recorded with its reason); the CLI
    prints the message as one line and exits with code 1."""
