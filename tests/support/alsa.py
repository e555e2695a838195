"""Fixtures: alsa."""
