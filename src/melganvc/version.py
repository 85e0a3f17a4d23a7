"""The package version (pyproject.toml holds the same string), apart from ``__init__`` so that
any layer can read it without importing the public API."""

__version__ = "0.1.0"
