"""Shared test helpers (real vendor processes, fixtures)."""
