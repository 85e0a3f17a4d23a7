"""Subcommands that live beside the core ones in ``cli.py`` (conversion, evaluation, demo)."""

from __future__ import annotations
