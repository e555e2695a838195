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
    """The codec imports no sockets, threads or device libraries, in none of its modules."""
    forbidden = {"socket", "threading", "websocket", "websockets", "alsaaudio", "gpiozero"}
    modules = sorted((PACKAGE / "protocol").glob("*.py"))
    assert len(modules) >= 5  # the package, not a stray single module
    for path in modules:
        assert not _imports(path) & forbidden, path.name


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
    """The emulator is the codec's test oracle: none of its modules imports speakerd.protocol,
    nor the config rules the codec's settings follow (it must hold its own reading of the API)."""
    rules = {"THINK_PROVIDERS", "SPEAK_PROVIDERS", "FLUX_MODELS", "FLUX_LANGUAGES", "turn_taking",
             "is_flux", "resolved_listen"}

    def shared(name: str) -> bool:
        return name.startswith(("speakerd.protocol", "speakerd.config.agent",
                                "speakerd.config.checks")) or (
            name.startswith("speakerd.config.") and name.split(".")[-1] in rules)
    importers = sorted(path.name for path in (PACKAGE / "emulator").glob("*.py")
                       if any(shared(name) for name in _speakerd_imports(path)))
    assert importers == []
ROOT = PACKAGE.parent
STATE_WORDS = {"idle", "connecting", "listening", "thinking", "speaking", "offline", "error"}


def _python_files() -> list[Path]:
    return sorted(p for folder in ("speakerd", "tests", "scripts", "bench")
                  for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def _event_names() -> set[str]:
    tree = ast.parse((PACKAGE / "events.py").read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def test_every_event_class_is_defined_once_in_events() -> None:
    """No module or test builds a look-alike of an inbox event (or of State): all import them."""
    names = _event_names()
    assert {"State", "ButtonPressed", "PlaybackDrained", "FunctionFinished"} <= names
    twins = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
             for path in _python_files() if path != PACKAGE / "events.py"
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.ClassDef) and node.name in names]
    assert not twins, twins


def _state_literals(path: Path) -> list[str]:
    """String constants naming a state. The six words that mean nothing else are flagged
    wherever they stand; "error" (also a chime's name and a JSON key) where a state is meant:
    compared, chosen between, or handed to something that takes a state."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and node.value in STATE_WORDS - {"error"}:
            found.append(node)
        candidates: list[ast.expr] = []
        if isinstance(node, ast.Compare):
            candidates = [node.left, *node.comparators]
        elif isinstance(node, ast.IfExp):
            candidates = [node.body, node.orelse]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if name in {"show", "_show", "_set_state", "wait_state", "seen", "State", "count",
                        "index", "on_state"}:
                candidates = list(node.args)
        found += [c for c in candidates if isinstance(c, ast.Constant) and c.value == "error"]
    return [f"{path.relative_to(ROOT)}:{c.lineno} {c.value!r}" for c in found]  # type: ignore[attr-defined]


def test_no_state_is_a_string_literal_outside_events() -> None:
    """States are spelled State.X everywhere; the words live in events.py alone."""
    # The config tests spell states as the YAML does: there they are the user's text.
    yaml_text = {ROOT / "tests/unit/test_config.py", ROOT / "tests/component/test_config_fuzz.py"}
    literals = [hit for path in _python_files()
                if "emulator" not in path.relative_to(ROOT).parts and path != PACKAGE / "events.py"
                and path not in yaml_text and path != Path(__file__).resolve()
                for hit in _state_literals(path)]
    assert not literals, literals


# Which room of the package may import which (design.md §2, kept current here). A room is a
# top-level module or a subpackage. The two flows read off it: mic → router → agent → router →
# speaker, and button → session → leds; the state machine's helpers hang off the session.
MAY_IMPORT: dict[str, set[str]] = {
    # typing only: AgentEventReceived carries a decoded server event, ListenChanged a config
    "events": {"config", "protocol"},
    "backoff": set(),
    "worker": set(),
    "doorbell": set(),
    "boards": set(),  # data files and the words that spot them: nothing of ours
    # A board profile is merged before validation; at check time only (imported inside the
    # rule) the argument checker and a trial encode of the settings.
    "config": {"boards", "events", "functions", "protocol"},
    "protocol": {"config"},
    "audio": {"config"},
    "chimes": {"audio"},
    "uplink": {"events"},
    "device": {"audio", "backoff"},  # the open, lost, reopened device both audio threads hold
    "framing": {"audio", "uplink"},
    "mic": {"audio", "device", "doorbell", "framing", "uplink", "worker"},
    "replies": {"audio", "doorbell"},
    "room": {"audio"},
    "speaker": {"audio", "chimes", "config", "device", "events", "replies", "room", "worker"},
    "router": {"audio", "protocol"},  # audio: the speaker's QueueFull
    "agent": {"doorbell", "events", "protocol", "textsafe"},
    "turns": {"protocol"},
    "reconnect": {"backoff", "config"},
    "connection": {"config", "events", "protocol", "reconnect", "router", "textsafe"},
    "inbox": {"events"},
    "playback": set(),
    "statusline": {"events"},
    "timers": set(),
    "seams": {"events", "uplink"},  # what the session drives: the mic, the speaker, the LEDs
    "turnend": {"seams"},
    "floor": {"config", "connection", "events", "router", "seams", "statusline", "uplink"},
    "keeper": {"connection", "events", "floor", "playback", "seams", "textsafe", "turnend"},
    "serverevents": {"connection", "events", "floor", "keeper", "playback", "protocol",
                     "textsafe", "turns"},
    "session": {"config", "connection", "events", "floor", "inbox", "keeper", "playback",
                "reconnect", "router", "seams", "serverevents", "statusline", "timers", "turnend",
                "turns", "worker"},
    "button": {"config"},
    "leds": {"config", "events", "worker"},  # the pixels' one animation thread
    "outputs": set(),
    "functions": {"config", "events", "outputs", "textsafe"},  # outputs for typing only
    "convlog": set(),
    "textsafe": set(),
    "recorder": set(),
    "notify": set(),
    "journal": set(),
    "control": set(),  # it reaches the session through the daemon's parts, never by import
    "selftest": {"audio", "button", "config", "events", "leds"},
    "emulator": {"config"},  # its sound rig builds device configs; never the codec
}
# Wiring (the daemon and the parts it builds) and the command line may import any room but the
# emulator (a device never runs it);
# the command line starts the emulator on request.
WIRING = {"daemon": {"emulator"}, "parts": {"emulator"}, "__main__": set(), "__init__": {"emulator"}}


def _rooms() -> dict[str, set[str]]:
    imports: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        room = _room(path)
        found = {name.split(".")[1] for name in _speakerd_imports(path) if name.count(".") >= 1}
        imports.setdefault(room, set()).update(found - {room})
    return imports


def test_each_room_imports_only_what_the_layout_allows() -> None:
    """The internal import table: a new dependency between rooms is a decision, made here."""
    rooms = _rooms()
    unknown = sorted(set(rooms) - set(MAY_IMPORT) - set(WIRING))
    assert not unknown, f"rooms missing from the layout table: {unknown}"
    wrong = {room: sorted(found - MAY_IMPORT[room]) for room, found in rooms.items()
             if room in MAY_IMPORT and found - MAY_IMPORT[room]}
    assert not wrong, wrong
    barred = {room: sorted(found & WIRING[room]) for room, found in rooms.items()
              if room in WIRING and found & WIRING[room]}
    assert not barred, barred
