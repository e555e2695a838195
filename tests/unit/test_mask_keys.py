"""The websocket mask keys: drawn from the OS in batches, never handed out twice."""

from __future__ import annotations

from speakerd.agent.frames import _MASK_KEYS, MaskKeys


def test_keys_are_four_bytes_and_batches_are_used_up_in_order() -> None:
    """Each call returns the next unused slice of the batch; a new batch follows the last."""
    keys = MaskKeys()
    first = [keys(4) for _ in range(_MASK_KEYS)]
    assert all(len(k) == 4 for k in first)
    assert b"".join(first) == keys._pool  # one batch, handed out slice by slice
    pool = keys._pool
    assert len(keys(4)) == 4 and keys._pool != pool  # the next call drew a fresh batch
