"""Sluis: a broker that shares signals between agencies under policy, with a verifiable log."""

__version__ = "0.1.0"
