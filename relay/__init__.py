"""Relay App Store Connect webhooks to GitHub ``repository_dispatch`` events."""

__version__ = "0.1.0"
