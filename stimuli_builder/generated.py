"""Stimuli the builder synthesises itself: headphone screening, practice, calibration,
and the low-pass anchors of MUSHRA trials (made from each item's reference).

Headphone screening (docs/study-config.md explains the choice between them):

* **Huggins pitch** (Milne et al. 2021, "An online headphone screening test based
  on dichotic pitch", Behav Res Methods 53:1551-1562). Three 1 s white-noise
  intervals; in one of them a narrow band (+-6% around a centre frequency near
  600 Hz) is phase-inverted in one ear. Over headphones that interval carries a
  faint pitch; over loudspeakers the inter-aural difference is lost and all three
  sound alike. The participant picks the interval with the tone.
* **Antiphase** (Woods et al. 2017, "Headphone screening to facilitate
  web-based auditory experiments", Atten Percept Psychophys 79:2064-2072). Three
  1 s 200 Hz tones; one is 6 dB quieter (the answer); one of the other two is
  played in antiphase between the ears, which over loudspeakers cancels
  acoustically and sounds quietest, so loudspeaker listeners tend to pick it.

Levels here are digital (noise and tones at -20 dBFS RMS before fades); the package
then brings each trial, as one file, to the study loudness with a single gain, so the
levels within a trial keep their relation and the check plays as loud as the sound the
participant set the volume with (white noise at -20 dBFS RMS is about -15 LUFS, 8 LU
above a -23 LUFS calibration sound: issue 34.4).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

INTERVAL_S = 1.0
GAP_S = 0.5
RMS_DBFS = -20.0
_RAMP_S = 0.1


def _ramped(x: np.ndarray, sample_rate: int, ramp_s: float = _RAMP_S) -> np.ndarray:
    n = int(sample_rate * ramp_s)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
    env = np.ones(x.shape[0])
    env[:n], env[-n:] = ramp, ramp[::-1]
    return x * (env[:, None] if x.ndim == 2 else env)


def _rms_to(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)


def _sequence(intervals: list[np.ndarray], sample_rate: int) -> np.ndarray:
    gap = np.zeros((int(GAP_S * sample_rate), 2))
    parts: list[np.ndarray] = [gap]
    for iv in intervals:
        parts += [iv, gap]
    return np.concatenate(parts)


def interval_spans(n: int = 3) -> list[tuple[float, float]]:
    """Where each of ``n`` intervals of :func:`_sequence` plays (start, end in seconds)."""
    return [
        (GAP_S + i * (INTERVAL_S + GAP_S), GAP_S + i * (INTERVAL_S + GAP_S) + INTERVAL_S) for i in range(n)
    ]


def huggins_trial(target: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Stereo ``[n, 2]`` audio: three noise intervals, a Huggins pitch in interval ``target``."""
    n = int(INTERVAL_S * sample_rate)
    centre = 600.0 * rng.uniform(0.9, 1.1)  # roved so the pitch cannot be learned across trials
    intervals = []
    for i in range(3):
        noise = rng.standard_normal(n)
        left = noise
        if i == target:
            spectrum = np.fft.rfft(noise)
            freqs = np.fft.rfftfreq(n, 1 / sample_rate)
            band = np.abs(freqs - centre) <= 0.06 * centre
            spectrum[band] *= -1  # 180 degree phase shift in the band, right ear only
            right = np.fft.irfft(spectrum, n)
        else:
            right = noise
        stereo = _rms_to(np.stack([left, right], axis=1), RMS_DBFS)
        intervals.append(_ramped(stereo, sample_rate, 0.02))
    return _sequence(intervals, sample_rate)


def antiphase_trial(target: int, antiphase: int, sample_rate: int) -> np.ndarray:
    """Stereo audio: three 200 Hz tones, ``target`` 6 dB quieter, ``antiphase`` phase-inverted in one ear."""
    if target == antiphase:
        raise ValueError("the quiet tone and the antiphase tone must differ")
    t = np.arange(int(INTERVAL_S * sample_rate)) / sample_rate
    tone = _rms_to(np.sin(2 * np.pi * 200.0 * t), RMS_DBFS)
    intervals = []
    for i in range(3):
        left = tone * (10 ** (-6 / 20) if i == target else 1.0)
        right = -left if i == antiphase else left
        intervals.append(_ramped(np.stack([left, right], axis=1), sample_rate))
    return _sequence(intervals, sample_rate)


def tone_melody(
    register: str, rng: np.random.Generator, sample_rate: int, seconds: float = 3.0
) -> np.ndarray:
    """A short melody of harmonic tones in a 'high' or 'low' register (practice trials)."""
    base = {"high": 880.0, "low": 110.0}[register]
    n_notes = 6
    note_s = seconds / n_notes
    t = np.arange(int(note_s * sample_rate)) / sample_rate
    notes = []
    for step in rng.choice([0, 2, 4, 5, 7, 9, 12], size=n_notes):
        f = base * 2 ** (step / 12)
        note = sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3))
        notes.append(_ramped(note * np.exp(-3 * t), sample_rate, 0.01))
    return _rms_to(np.concatenate(notes), RMS_DBFS)


def drum_pattern(rng: np.random.Generator, sample_rate: int, seconds: float = 3.0) -> np.ndarray:
    """Noise bursts on a steady beat (practice trials)."""
    out = np.zeros(int(seconds * sample_rate))
    hit = rng.standard_normal(int(0.08 * sample_rate)) * np.exp(-np.linspace(0, 8, int(0.08 * sample_rate)))
    for start in np.arange(0, seconds - 0.1, 0.25 if rng.random() < 0.5 else 0.5):
        i = int(start * sample_rate)
        out[i : i + hit.size] += hit
    return _rms_to(out, RMS_DBFS)


def calibration_sound(sample_rate: int, seconds: float = 8.0) -> np.ndarray:
    """A sustained major chord with a soft pulse: music-like, steady level, for setting volume."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 440.0))
    pulse = 0.8 + 0.2 * np.sin(2 * np.pi * 2.0 * t)
    return _ramped(_rms_to(chord * pulse, RMS_DBFS), sample_rate)


# ITU-R BS.1534-3 (2015), MUSHRA: the low-range anchor is the reference low-pass filtered at
# 3.5 kHz (every test has it); the mid-range anchor, at 7 kHz, is optional.
ANCHOR_CUTOFF_HZ = {"lp3500": 3500.0, "lp7000": 7000.0}
_LOWPASS = "lowpass:"
# The filter is 6 dB down at the cut-off and 80 dB down 250 Hz above it: nothing of the
# reference's treble is left to hear above the cut-off, whatever the playback level.
_LOWPASS_TRANSITION_HZ = 500.0
_LOWPASS_STOP_DB = 80.0


def lowpass_transform(cutoff_hz: float) -> str:
    """The ClipSource transform that low-pass filters a clip at ``cutoff_hz`` (an anchor)."""
    return f"{_LOWPASS}{cutoff_hz:g}"


def lowpass_cutoff(name: str) -> float | None:
    """The cut-off of a :func:`lowpass_transform` name, or None for any other transform."""
    return float(name.removeprefix(_LOWPASS)) if name.startswith(_LOWPASS) else None


def lowpass(audio: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """``audio`` (``[n]`` or ``[n, channels]``) low-pass filtered at ``cutoff_hz``.

    A linear-phase FIR (Kaiser window) applied centred, so without delay: the anchor stays
    time-aligned with the reference it is made from, and switching between them in a MUSHRA
    trial does not jump.
    """
    numtaps, beta = signal.kaiserord(_LOWPASS_STOP_DB, _LOWPASS_TRANSITION_HZ / (sample_rate / 2))
    numtaps |= 1  # odd: a whole-sample delay, which mode="same" takes back out
    taps = signal.firwin(numtaps, cutoff_hz, window=("kaiser", beta), fs=sample_rate)
    if audio.ndim == 2:
        taps = taps[:, None]
    return np.asarray(signal.oaconvolve(audio, taps, mode="same", axes=0))
