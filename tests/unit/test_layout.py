"""The house rules of the package layout: each device library is imported by its one owner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "speakerd"

# library -> the only modules allowed to import it (design.md §2)
OWNERS = {
    "alsaaudio": {"audio"},
    "gpiozero": {"button", "leds", "outputs"},
    "websocket": {"agent"},
    "websockets": {"emulator"},
    "asyncio": set(),
}


def _room(path: Path) -> str:
    """A top-level module's name, or its subpackage's for a module inside one (emulator/...)."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_only_the_owner_module_imports_each_device_library(library: str) -> None:
    """alsaaudio, gpiozero and websocket each stay behind one module; no asyncio anywhere."""
    importers = {_room(path) for path in PACKAGE.rglob("*.py") if library in _imports(path)}
    assert importers <= OWNERS[library], f"{library} imported by {sorted(importers - OWNERS[library])}"


def test_protocol_is_pure() -> None:
    """The codec imports no sockets, threads or device libraries."""
    forbidden = {"socket", "threading", "websocket", "websockets", "alsaaudio", "gpiozero"}
    assert not _imports(PACKAGE / "protocol.py") & forbidden


def _speakerd_imports(path: Path) -> set[str]:
    """The speakerd modules a file imports, as absolute names (`from .. import x` included)."""
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "speakerd"}


def test_the_emulator_shares_no_code_with_the_codec() -> None:
    """The emulator is the codec's test oracle: none of its modules imports speakerd.protocol."""
    importers = sorted(path.name for path in (PACKAGE / "emulator").glob("*.py")
                       if "speakerd.protocol" in _speakerd_imports(path))
    assert importers == []
