"""The ``regen`` command line. Each command group lives in its own module."""

from __future__ import annotations

from regen.cli._app import cli, main

__all__ = ["cli", "main"]
