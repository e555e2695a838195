"""Fixtures: pulse."""
