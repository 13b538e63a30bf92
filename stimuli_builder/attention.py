"""The audio of attention checks that only listening answers (issue 31.5).

Before, every identical-pair check's answer was "They sound the same" and an instructed
check printed its answer in the question, so a bot passed all of them unheard. Now:

* **identical pair**: clip B is clip A (answer "same") or clip A played at half speed,
  an octave lower and half the tempo (answer "different"); the builder picks which per
  check, balanced over the package. Half speed changes any music, drone or noise audibly
  (pitch, tempo and brightness at once), whereas two clips of different features may
  happen to sound alike. Both clips are then cut to one length, dithered and written as
  PCM WAV of one byte size like every compared pair, so neither file names the answer.
* **instructed**: a label choice whose question is the study's ordinary one, with one
  of its example clips carrying a spoken instruction over the music, "Attention check.
  Choose answer number two". The text shows no answer.

The voice is a recording shipped with the package, one per study language
(``voice/<language>/``, made once with espeak-ng by ``voice/make_voice.sh``), not speech
synthesised at build time: a fresh machine, CI or a researcher's laptop builds without
espeak-ng installed, and the same seed gives the same bytes whatever espeak version a
machine has. It names the answer's position, not its
words, so one recording serves every label set; the page shows the options in package
order and numbers them 1 to n on the keyboard.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from stimuli_builder.audio_prep import resample

VOICE_DIR = Path(__file__).parent / "voice"
MAX_SPOKEN_OPTIONS = 10  # voice/<language>/number-1.flac .. number-10.flac
HALF_SPEED = "half_speed"
_INSTRUCTION = "instruction:"
_LEAD_S = 1.0  # music before the voice starts, where the clip is long enough
_MIN_EDGE_S = 0.25  # the least music before and after the voice
_MAX_SPEEDUP = 1.3  # the most a voice is sped up to fit a short clip
_DUCK_DB = 15.0  # the music under the voice
_GAP_S = 0.12  # between "answer number" and the number


def instruction(position: int, language: str = "en") -> str:
    """The transform that speaks "choose answer number ``position + 1``" over a clip, in
    ``language`` (the study's: a German study's participants hear German)."""
    if not 0 <= position < MAX_SPOKEN_OPTIONS:
        raise ValueError(f"the voice says answer numbers 1 to {MAX_SPOKEN_OPTIONS}, not {position + 1}")
    if not (VOICE_DIR / language).is_dir():
        raise ValueError(f"no spoken instruction in language {language!r} (voice/make_voice.sh makes them)")
    return f"{_INSTRUCTION}{language}:{position}"


def spoken_position(name: str) -> int | None:
    """The answer position a transform speaks (0-based), or None."""
    return int(name.rpartition(":")[2]) if name.startswith(_INSTRUCTION) else None


def transform(audio: np.ndarray, name: str, sample_rate: int) -> np.ndarray:
    """``audio`` (mono, at ``sample_rate``) changed as a ClipSource's ``transform`` says."""
    if not name:
        return audio
    if name == HALF_SPEED:
        # Twice the samples at the same rate: half the speed, an octave lower.
        return resample(audio, 1, 2)
    position = spoken_position(name)
    if position is None:
        raise ValueError(f"unknown clip transform {name!r}")
    language = name.removeprefix(_INSTRUCTION).partition(":")[0]
    return with_voice(audio, voice(position, sample_rate, language), sample_rate)


@cache
def _voice_file(name: str, sample_rate: int, language: str) -> np.ndarray:
    audio, sr = sf.read(str(VOICE_DIR / language / f"{name}.flac"), dtype="float64")
    return resample(audio, sr, sample_rate)


def voice(position: int, sample_rate: int, language: str = "en") -> np.ndarray:
    """ "Attention check. Choose answer number <position + 1>", at ``sample_rate``."""
    instruction(position, language)  # range check
    gap = np.zeros(int(_GAP_S * sample_rate))
    # Every number gets the longest one's slot: "two" is shorter than "seven", and a clip's
    # length (what study.json and the file say without listening) must not tell them apart.
    numbers = range(1, MAX_SPOKEN_OPTIONS + 1)
    slot = max(_voice_file(f"number-{n}", sample_rate, language).shape[0] for n in numbers)
    number = _voice_file(f"number-{position + 1}", sample_rate, language)
    number = np.concatenate([number, np.zeros(slot - number.shape[0])])
    return np.concatenate([_voice_file("instruction", sample_rate, language), gap, number])


def with_voice(music: np.ndarray, speech: np.ndarray, sample_rate: int) -> np.ndarray:
    """``speech`` over ``music``, the music lowered by ``_DUCK_DB`` under it; the clip keeps
    the music's length.

    The voice is set to the music's RMS before the music is lowered, so it stands about
    15 dB above it. It starts ``_LEAD_S`` in, or centred where the music is shorter; where
    even that leaves less than ``_MIN_EDGE_S`` of music at either end, the voice is sped
    up to fit (at most ``_MAX_SPEEDUP``; pitch rises with it, words stay clear). The
    earlier version lengthened the clip with silence instead: the demo's spoken examples
    were 6.05 s where every other was 4.0 s, which told a bot which trials were checks
    (issue 34).
    """
    n = music.shape[0]
    edge = int(_MIN_EDGE_S * sample_rate)
    room = n - 2 * edge
    if speech.shape[0] > room:
        if room <= 0 or speech.shape[0] > _MAX_SPEEDUP * room:
            raise ValueError(
                f"a spoken attention check needs a clip of at least "
                f"{speech.shape[0] / _MAX_SPEEDUP / sample_rate + 2 * _MIN_EDGE_S:.2f} s; this one is "
                f"{n / sample_rate:.2f} s (attention.kinds: leave 'instructed' out, or use longer examples)"
            )
        speech = resample_to(speech, room)
    start = min(int(_LEAD_S * sample_rate), (n - speech.shape[0]) // 2)
    end = start + speech.shape[0]
    ramp = min(int(0.15 * sample_rate), edge)  # the edges leave room for it on both sides
    low = 10 ** (-_DUCK_DB / 20)
    gain = np.interp(np.arange(n), [start - ramp, start, end, end + ramp], [1.0, low, low, 1.0])
    rms_music = float(np.sqrt(np.mean(music**2)))
    rms_voice = float(np.sqrt(np.mean(speech[np.abs(speech) > 1e-3] ** 2)))
    out = music * gain
    out[start:end] += speech * (rms_music / rms_voice if rms_voice > 0 else 1.0)
    return out


def resample_to(audio: np.ndarray, n: int) -> np.ndarray:
    """``audio`` played faster so that it lasts ``n`` samples."""
    return np.asarray(signal.resample(audio, n))
