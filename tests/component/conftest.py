"""The component tier: one real part at a time (alsa-lib, a socket, mock pins, the emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `component` (the hook sees the whole session's items)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.component)
