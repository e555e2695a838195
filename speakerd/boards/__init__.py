"""Board profiles: what a voice HAT or a common set-up needs in the config, one YAML file each.

A profile is data: a description, the ALSA card ids or names that reveal the board, and the
config keys it sets (audio devices, button, LEDs). `board: NAME` in speakerd.yaml merges it
under the file's own keys, so adding a board is adding a file here.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

_KEYS = {"description", "match", "config"}


@dataclass(frozen=True)
class Board:
    """One profile as shipped: its name (the file's stem), what it is, how to spot it, its keys."""
    name: str
    description: str
    match: tuple[str, ...]  # words a card's id or name contains (case-insensitive)
    config: Mapping[str, Any]

    def matches(self, card: Mapping[str, Any]) -> bool:
        """Whether an ALSA card (`id` and `name`, as `speakerd devices` lists them) is this board's."""
        text = f"{card.get('id', '')} {card.get('name', '')}".lower()
        return any(word.lower() in text for word in self.match)


@dataclass(frozen=True)
class BoardMatch:
    """A profile whose words one of the cards seen contains."""
    board: Board
    card: Mapping[str, Any]


def _parse(name: str, text: str) -> Board:
    raw = yaml.safe_load(text)
    if not isinstance(raw, Mapping) or set(raw) != _KEYS:
        raise ValueError(f"board profile {name}: needs exactly the keys {sorted(_KEYS)}")
    match = raw["match"]
    if not isinstance(match, list) or not all(isinstance(m, str) and m for m in match):
        raise ValueError(f"board profile {name}: match must be a list of words")
    if not isinstance(raw["config"], Mapping) or "board" in raw["config"]:
        raise ValueError(f"board profile {name}: config must be a mapping of config keys")
    return Board(name, str(raw["description"]), tuple(match), raw["config"])


@functools.cache
def _all() -> Mapping[str, Board]:
    # Read once: the files ship with the package and do not change while it runs.
    found: dict[str, Board] = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            name = entry.name[: -len(".yaml")]
            found[name] = _parse(name, entry.read_text(encoding="utf-8"))
    return found


def names() -> list[str]:
    """Every shipped profile's name, sorted."""
    return sorted(_all())


def board(name: str) -> Board | None:
    """The named profile, or None when no file has that name."""
    return _all().get(name)


def profile_config(name: str) -> dict[str, Any] | None:
    """A fresh copy of the config keys a profile sets (the caller may merge into it)."""
    found = board(name)
    return copy.deepcopy(dict(found.config)) if found is not None else None


def matching(cards: Iterable[Mapping[str, Any]]) -> list[BoardMatch]:
    """Every profile that one of these cards reveals, in name order (one card may reveal several:
    boards built on the same codec and driver show the same card)."""
    cards = list(cards)
    return [BoardMatch(b, card) for b in _all().values() for card in cards if b.matches(card)]


def _card_of(device: str) -> str | None:
    """The card id in an ALSA device name such as plughw:CARD=seeed2micvoicec,DEV=0."""
    rest = device.partition("CARD=")[2]
    return rest.split(",")[0] or None if rest else None


def advice(found: BoardMatch, seen: Iterable[str]) -> list[str]:
    """YAML lines that make this board work with the cards seen: the board line, and a device of
    its own for each sound device of the profile whose card is not here."""
    seen = set(seen)
    lines = [f"board: {found.board.name}"]
    audio = found.board.config.get("audio") or {}
    devices = {key: (audio.get(key) or {}).get("device", "") for key in ("input", "output")}
    missing = {key: d for key, d in devices.items() if _card_of(d) not in (None, *seen)}
    if not missing:
        return lines
    if len({_card_of(d) for d in devices.values()}) == 1:
        # One card for both ways (a HAT, a speakerphone): this card under another id.
        mine = f"plughw:CARD={found.card.get('id')}"
        inner = ", ".join(f"{key}: {{device: \"{mine}\"}}" for key in missing)
        gone = ", ".join(sorted(set(missing.values())))
        lines.append(f"audio: {{{inner}}}   # the board's {gone} is not here")
    else:
        for key, device in missing.items():
            lines.append(f"# audio.{key}.device: the board's {device} is not here: name yours")
    return lines
