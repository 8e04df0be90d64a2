"""The package's version, importable without importing the package's whole API."""

__version__ = "0.1.0"
