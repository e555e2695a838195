"""Card-wide ALSA: the mixer control, the list of cards and PCMs, alsa-lib's own error lines."""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

import alsaaudio

from .formats import AudioDeviceError

# One logger for the package: its journal lines say speakerd.audio, whichever module writes them.
log = logging.getLogger(__package__)

# Set once: alsa-lib keeps only the address of its error handler.
_alsa_quiet = False


def quiet_alsa_lib() -> bool:
    """Stop alsa-lib printing its own error lines to stderr, i.e. into the journal.

    alsa-lib prints a dozen `ALSA lib conf.c:...` lines for every failed open, and a missing
    card is retried with backoff; the session logs one line per outage that names the device
    and its config key, and each retry is a debug line of our own.

    The handler must be C that ignores its arguments, not a Python callback: alsa-lib calls it
    holding its configuration lock, and a Python callback may hand the GIL to a thread that
    then waits for that lock in its own snd_pcm_open (pyalsaaudio keeps the GIL there), which
    deadlocked the daemon on a reload while a missing card was being retried. libc's getpid
    takes no arguments and changes nothing; the calling conventions of the platforms we run on
    let a callee ignore arguments it was passed. (It is also no libffi closure, which
    MemoryDenyWriteExecute= could refuse.)
    """
    global _alsa_quiet
    if _alsa_quiet:
        return True
    try:
        # The soname pyalsaaudio is linked against, so this is the library already loaded.
        lib = ctypes.CDLL("libasound.so.2")
        noop = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p)
        lib.snd_lib_error_set_handler.argtypes = [ctypes.c_void_p]
        if lib.snd_lib_error_set_handler(noop) != 0:
            return False
    except (OSError, AttributeError) as exc:
        log.debug("alsa-lib's error lines stay on stderr: %s", exc)
        return False
    _alsa_quiet = True
    return True


class AlsaMixer:
    """One mixer control (e.g. Master) for the agent's volume function."""

    KEY = "functions.action.control"

    def __init__(self, card: str, control: str):
        self.card = card
        self.control = control
        # One mixer handle per call keeps this safe to use from any thread; the mixer is rarely
        # touched, so there is nothing to gain from holding it open.
        self._lock = threading.Lock()
        self._open().close()

    def _open(self) -> Any:
        candidates = [self.card]
        if ":" not in self.card and self.card != "default":
            candidates.append(f"hw:CARD={self.card}")
        errors = []
        for device in candidates:
            try:
                return alsaaudio.Mixer(control=self.control, device=device)
            except alsaaudio.ALSAAudioError as exc:
                errors.append(str(exc))
        try:
            available = ", ".join(alsaaudio.mixers(device=self.card)) or "none"
        except alsaaudio.ALSAAudioError:
            available = "unknown (the card cannot be opened)"
        raise AudioDeviceError(self.KEY, f"no mixer control {self.control!r} on card {self.card!r} "
                                         f"({'; '.join(errors)}); controls there: {available}")

    def get_percent(self) -> int:
        with self._lock:
            mixer = self._open()
            try:
                values = mixer.getvolume()
            except alsaaudio.ALSAAudioError as exc:
                raise AudioDeviceError(self.KEY, f"cannot read {self.control!r}: {exc}") from None
            finally:
                mixer.close()
        return round(sum(values) / len(values)) if values else 0

    def set_percent(self, p: int) -> None:
        p = max(0, min(100, int(p)))
        with self._lock:
            mixer = self._open()
            try:
                mixer.setvolume(p)
            except alsaaudio.ALSAAudioError as exc:
                raise AudioDeviceError(self.KEY, f"cannot set {self.control!r}: {exc}") from None
            finally:
                mixer.close()


def list_devices() -> dict[str, Any]:
    """Sound cards and PCM names, for `speakerd devices`."""
    cards = []
    for index in alsaaudio.card_indexes():
        try:
            card_id, name = alsaaudio.card_name(index)
        except alsaaudio.ALSAAudioError:
            continue
        cards.append({"index": index, "id": card_id, "name": name,
                      "device": f"plughw:CARD={card_id}"})
    return {
        "cards": cards,
        "playback": list(alsaaudio.pcms(alsaaudio.PCM_PLAYBACK)),
        "capture": list(alsaaudio.pcms(alsaaudio.PCM_CAPTURE)),
    }
