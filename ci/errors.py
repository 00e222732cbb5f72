"""Exceptions that decide the exit status of ``asc-ci``."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting, credential or argument is missing or invalid (exit status 2).

    The message names the variable or key and gives the fix. It never
    contains a secret value.
    """


class AutomationError(Exception):
    """An automation could not finish its work (exit status 1)."""
