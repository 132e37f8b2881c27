"""Client commands of the ``vize`` CLI (login, tasks, import, train, classify ...)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the client sub-commands to the ``vize`` parser (filled in by the SDK/CLI work)."""
