"""Fixtures: pins."""
