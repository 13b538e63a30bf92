"""A music-like calibration signal for drawing an untrained codec's codebooks (the tiny
presets of both backends): notes of every synthetic-corpus instrument and drum hits."""

from __future__ import annotations

import numpy as np
import torch

from sae_core.synth.timbre import DRUMS, INSTRUMENTS, render_drum, render_note


def calibration_audio(sr: int, seed: int, seconds: float = 30.0) -> torch.Tensor:
    """Music-like audio for initialising untrained codec codebooks (tiny presets only).

    Notes of every synthetic-corpus instrument and drum hits over a 45 dB range of levels,
    so that music, not only test tones, spreads over the codebook entries.
    """
    rng = np.random.default_rng([seed, 11])
    audio = np.zeros(int(seconds * sr) + sr)
    t = 0.0
    while t < seconds:
        level = 10 ** (rng.uniform(-50, -5) / 20)
        if rng.random() < 0.25:
            hit = render_drum(str(rng.choice(DRUMS)), sr, level, rng)
        else:
            hit = render_note(
                str(rng.choice(INSTRUMENTS)),
                float(rng.integers(36, 96)),
                float(rng.uniform(0.05, 0.4)),
                sr,
                level,
                rng,
            )
        start = int(t * sr)
        audio[start : start + len(hit)] += hit[: len(audio) - start]
        t += float(rng.uniform(0.02, 0.2))
    return torch.from_numpy(audio[: int(seconds * sr)].astype(np.float32))
