"""Board profiles: each shipped file is a valid config, the user's keys win, names are checked,
and the sound cards seen name the profile that fits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from speakerd import boards
from speakerd.__main__ import main, print_devices
from speakerd.config import EX_CONFIG, ConfigError, config_to_dict, parse_config

PROFILES = Path(boards.__file__).parent
NAMES = ["adafruit-voice-bonnet", "pi-usb-mic", "respeaker-2mic", "respeaker-4mic", "usb-speakerphone"]


def test_the_boards_are_the_files_shipped() -> None:
    """Each YAML file in speakerd/boards/ is one profile, named after the file."""
    assert boards.names() == NAMES == sorted(p.stem for p in PROFILES.glob("*.yaml"))


@pytest.mark.parametrize("name", NAMES)
def test_each_profile_is_a_valid_config_that_changes_something(name: str) -> None:
    """board: NAME alone loads, and sets keys the defaults do not have."""
    cfg = parse_config({"board": name})
    assert cfg.board == name
    plain = config_to_dict(parse_config({}))
    assert config_to_dict(cfg) != {**plain, "board": name}


@pytest.mark.parametrize("name", NAMES)
def test_each_profile_cites_where_its_values_come_from(name: str) -> None:
    """A profile's comments name the public source of its card name, button and LED wiring."""
    text = (PROFILES / f"{name}.yaml").read_text(encoding="utf-8")
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert re.search(r"https://\S+", comments) or "README" in comments
    for topic in ("card", "button", "led"):
        assert topic in comments.lower(), (name, topic)


def test_the_profiles_set_what_the_boards_have() -> None:
    """Card names, button pins and LED wiring as the boards' makers document them."""
    two = parse_config({"board": "respeaker-2mic"})
    assert two.audio.input.device == two.audio.output.device == "plughw:CARD=seeed2micvoicec"
    assert (two.button.pin, two.button.pull_up) == ("GPIO17", True)
    (ring,) = two.leds
    assert (ring.kind, ring.pixels, ring.pins, ring.spi_device) == ("apa102", 3, (), 1)
    assert (ring.power_pin, ring.active_high) == ("GPIO12", False)

    four = parse_config({"board": "respeaker-4mic"})
    assert four.audio.input.device == "plughw:CARD=seeed4micvoicec"
    assert four.audio.output.device == "plughw:CARD=Headphones"
    (ring,) = four.leds
    assert (ring.pixels, ring.spi_device, ring.power_pin, ring.active_high) == (12, 1, "GPIO5", True)

    bonnet = parse_config({"board": "adafruit-voice-bonnet"})
    (dots,) = bonnet.leds
    assert (dots.kind, dots.pixels, dots.pins) == ("apa102", 3, ("GPIO6", "GPIO5"))  # clock, data

    phone = parse_config({"board": "usb-speakerphone"})
    assert phone.audio.duplex == "full" and phone.leds == ()

    pi = parse_config({"board": "pi-usb-mic"})
    assert [(led.kind, led.pins) for led in pi.leds] == [("pwm", ("GPIO25",))]
    assert pi.audio.output.device == "plughw:CARD=Headphones"


def test_every_key_the_user_sets_wins_over_the_board() -> None:
    """The profile sits under the file: a user's device, button or LED list replaces the board's."""
    cfg = parse_config({
        "board": "respeaker-2mic",
        "audio": {"output": {"device": "plughw:CARD=Headphones", "sample_rate": 16000}},
        "button": {"pin": "GPIO27"},
        "leds": [{"kind": "apa102", "pixels": 3, "spi_device": 1, "global_brightness": 2}],
    })
    assert cfg.audio.input.device == "plughw:CARD=seeed2micvoicec"  # the board's, not overridden
    assert (cfg.audio.output.device, cfg.audio.output.sample_rate) == ("plughw:CARD=Headphones", 16000)
    assert (cfg.button.pin, cfg.button.pull_up) == ("GPIO27", True)
    (ring,) = cfg.leds
    assert (ring.global_brightness, ring.power_pin) == (2, "")  # the user's list replaced the board's


def test_an_empty_section_keeps_the_board_and_an_empty_list_clears_it() -> None:
    """`leds:` with nothing keeps the board's LEDs; `leds: []` means none."""
    assert len(parse_config({"board": "respeaker-4mic", "leds": None}).leds) == 1
    assert parse_config({"board": "respeaker-4mic", "leds": []}).leds == ()


@pytest.mark.parametrize("name, hint", [
    ("respeaker-2mics", "(did you mean 'respeaker-2mic'?)"),
    ("x", "(did you mean one of " + ", ".join(NAMES) + "?)"),
])
def test_an_unknown_board_is_named_with_a_suggestion(name: str, hint: str) -> None:
    """A name no file has is one problem at `board`, with the closest name or the list."""
    with pytest.raises(ConfigError) as err:
        parse_config({"board": name})
    assert err.value.problems == [f"board: unknown board {name!r} {hint}"]


def test_a_profile_goes_through_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config accepts a board line like any other config, and exits 78 on a bad name."""
    good = tmp_path / "good.yaml"
    good.write_text("board: respeaker-4mic\naudio:\n  output:\n    device: plughw:CARD=Device\n")
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("board: x\n")
    assert main(["check-config", str(bad)]) == EX_CONFIG
    assert "board: unknown board 'x' (did you mean " in capsys.readouterr().err


def test_a_profile_s_own_problems_are_reported_like_the_file_s() -> None:
    """A user key that breaks the board's LEDs is named at its path, as anywhere else."""
    with pytest.raises(ConfigError) as err:
        parse_config({"board": "respeaker-2mic", "button": {"pin": "GPIO12"}})
    assert err.value.problems == ["leds[0].power_pin: GPIO12 is already in use"]


@pytest.mark.parametrize("cards, expected", [
    ([{"id": "seeed2micvoicec", "name": "seeed-2mic-voicecard"}],
     ["adafruit-voice-bonnet", "respeaker-2mic"]),  # the same driver: both boards fit
    ([{"id": "seeed4micvoicec", "name": "seeed-4mic-voicecard"},
      {"id": "Headphones", "name": "bcm2835 Headphones"}], ["respeaker-4mic"]),
    ([{"id": "USB", "name": "Jabra SPEAK 410 USB"}], ["usb-speakerphone"]),
    ([{"id": "Device", "name": "USB PnP Sound Device"}], ["pi-usb-mic"]),
    ([{"id": "vc4hdmi0", "name": "vc4-hdmi-0"}], []),
])
def test_the_cards_seen_name_the_profiles_that_fit(cards: list[dict[str, str]], expected: list[str]) -> None:
    """A profile matches when a card's id or name contains one of its words."""
    assert [m.board.name for m in boards.matching(cards)] == expected


def test_a_profile_config_is_a_fresh_copy() -> None:
    """Merging into one loaded profile cannot change the next load."""
    first = boards.profile_config("respeaker-2mic")
    assert first is not None
    first["leds"][0]["pixels"] = 99
    again = boards.profile_config("respeaker-2mic")
    assert again is not None and again["leds"][0]["pixels"] == 3
    assert boards.profile_config("nope") is None


def test_devices_names_the_fitting_board_and_the_lines_to_write(capsys: pytest.CaptureFixture[str]) -> None:
    """`speakerd devices` lists the boards the cards reveal with the config lines that fit them:
    a speakerphone under another id gets its own device lines, which are valid YAML."""
    cards = [{"index": 0, "id": "Headphones", "name": "bcm2835 Headphones"},
             {"index": 1, "id": "seeed2micvoicec", "name": "seeed-2mic-voicecard"},
             {"index": 2, "id": "S410", "name": "Jabra SPEAK 410 USB"}]
    print_devices({"cards": cards, "playback": [], "capture": []})
    out = capsys.readouterr().out
    assert "respeaker-2mic: ReSpeaker 2-Mics Pi HAT" in out and "(card 1: seeed2micvoicec)" in out
    assert "    board: adafruit-voice-bonnet\n" in out and "    board: respeaker-2mic\n" in out
    assert "same card" in out
    (line,) = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("audio:")]
    assert yaml.safe_load(line) == {"audio": {"input": {"device": "plughw:CARD=S410"},
                                              "output": {"device": "plughw:CARD=S410"}}}
    print_devices({"cards": cards[:1], "playback": [], "capture": []}, as_json=True)
    assert json.loads(capsys.readouterr().out)["boards"] == []


def test_a_missing_second_card_is_pointed_out() -> None:
    """A 4-mic array without the Pi's headphone jack (a Pi 5) is told to name its speaker."""
    (found,) = boards.matching([{"id": "seeed4micvoicec", "name": "seeed-4mic-voicecard"}])
    assert boards.advice(found, ["seeed4micvoicec"]) == [
        "board: respeaker-4mic",
        "# audio.output.device: the board's plughw:CARD=Headphones is not here: name yours"]
    assert boards.advice(found, ["seeed4micvoicec", "Headphones"]) == ["board: respeaker-4mic"]


def test_the_shipped_config_names_every_board() -> None:
    """The comment above `board:` in config/speakerd.yaml lists each profile a user can name."""
    text = (PROFILES.parents[1] / "config" / "speakerd.yaml").read_text(encoding="utf-8")
    above = text[:text.index('\nboard: ""')]
    listed = re.search(r"# Boards: (.+)\.", above)
    assert listed is not None and sorted(listed.group(1).split(", ")) == NAMES
