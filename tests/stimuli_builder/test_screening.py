"""The generated headphone-screening stimuli do what their papers say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stimuli_builder.generated import GAP_S, INTERVAL_S, antiphase_trial, huggins_trial

SR = 16000


def _intervals(audio: np.ndarray) -> list[np.ndarray]:
    n, gap = int(INTERVAL_S * SR), int(GAP_S * SR)
    return [audio[gap + i * (n + gap) : gap + i * (n + gap) + n] for i in range(3)]


@pytest.mark.parametrize("target", [0, 1, 2])
def test_huggins_pitch_only_in_target_interval(target: int) -> None:
    audio = huggins_trial(target, np.random.default_rng(0), SR)
    assert audio.shape[1] == 2
    for i, iv in enumerate(_intervals(audio)):
        left, right = iv[:, 0], iv[:, 1]
        if i != target:
            np.testing.assert_allclose(left, right)  # diotic: nothing to hear but noise
            continue
        # Interaural phase is inverted in a narrow band near 600 Hz and nowhere else.
        cross = np.fft.rfft(left) * np.conj(np.fft.rfft(right))
        freqs = np.fft.rfftfreq(len(left), 1 / SR)
        band = (freqs > 560) & (freqs < 620)
        assert np.median(np.cos(np.angle(cross[band]))) < -0.9
        outside = (freqs > 1000) & (freqs < 4000)
        assert np.median(np.cos(np.angle(cross[outside]))) > 0.9


def test_antiphase_quiet_tone_and_loudspeaker_cancellation() -> None:
    audio = antiphase_trial(target=2, antiphase=0, sample_rate=SR)
    ivs = _intervals(audio)
    rms = [float(np.sqrt(np.mean(iv[:, 0] ** 2))) for iv in ivs]
    assert 20 * np.log10(rms[2] / rms[1]) == pytest.approx(-6.0, abs=0.05)
    np.testing.assert_allclose(ivs[0][:, 0], -ivs[0][:, 1])
    # Summed as loudspeakers would, the antiphase tone vanishes and becomes the "quietest".
    mono = [float(np.sqrt(np.mean(iv.sum(axis=1) ** 2))) for iv in ivs]
    assert mono[0] < 1e-9 < mono[2] < mono[1]
    with pytest.raises(ValueError):
        antiphase_trial(1, 1, SR)


def test_screening_order_is_the_sessions_own(example_package: Path) -> None:
    """Issue 16.2: the screening answers were 2 3 1 2 1 3 for everyone, to be learned once."""
    from artifact_schemas import load_key, load_study
    from artifact_schemas.order import list_items, session_order

    manifest = load_study(example_package / "study.json")
    key = load_key(example_package / "key.json")
    trials = {t.id: t for t in manifest.trials}
    items = list_items(manifest.lists[0].trials, manifest, key)
    patterns = set()
    for seed in range(20):
        order = session_order(items, manifest.order, seed)
        screening = [t for t in order if trials[t].phase == "screening"]
        assert order[: len(screening)] == screening  # still first
        assert order == session_order(items, manifest.order, seed)  # rebuilt from the seed
        patterns.add(
            tuple([o.id for o in trials[t].options].index(key.trials[t].correct_option) for t in screening)
        )
    assert len(patterns) >= 10, patterns


def test_screening_plays_as_loud_as_the_volume_sound(example_package: Path) -> None:
    """The headphone check's noise was 8 LU louder than the sound the participant set the
    volume with (issue 34.4); as one file levelled by one gain, its intervals keep their
    relation (the tests above) and its loudness is the study's."""
    import pyloudnorm
    import soundfile

    from artifact_schemas import load_study

    manifest = load_study(example_package / "study.json")
    assert manifest.calibration_clip is not None

    def lufs(clip_id: str) -> float:
        audio, rate = soundfile.read(example_package / manifest.clips[clip_id].file)
        return float(pyloudnorm.Meter(rate).integrated_loudness(audio))

    calibration = lufs(manifest.calibration_clip)
    screening = [t.references[0] for t in manifest.trials if t.phase == "screening"]
    assert screening
    for clip in screening:
        assert abs(lufs(clip) - calibration) < 1.0, (clip, lufs(clip), calibration)


def test_the_lit_sound_is_where_the_built_clip_sounds(example_package: Path) -> None:
    """Issue 34.4: the page lights "Sound 2" from the trial's segments; in the built file
    (levelled and encoded) each segment must hold a sound and the gaps between them none."""
    import soundfile as sf

    from artifact_schemas import load_study

    manifest = load_study(example_package / "study.json")
    screening = [t for t in manifest.trials if t.phase == "screening"]
    assert screening
    for trial in screening:
        assert len(trial.segments) == len(trial.options) == 3, trial.id
        audio, sr = sf.read(example_package / manifest.clips[trial.references[0]].file, always_2d=True)
        frame = int(0.02 * sr)  # 20 ms RMS: a single sample of a sound can cross zero
        level = np.sqrt(np.convolve(np.mean(audio**2, axis=1), np.ones(frame) / frame, mode="same"))
        inside = np.zeros(len(level), dtype=bool)
        for start, end in trial.segments:
            middle = level[int((start + 0.2) * sr) : int((end - 0.2) * sr)]  # past the ramps
            assert middle.min() > 1e-3, (trial.id, start, end)
            inside[int((start - 0.03) * sr) : int((end + 0.03) * sr)] = True
        assert level[~inside].max() < 1e-3, trial.id  # silence between the sounds


def test_segments_time_one_reference_clip() -> None:
    from artifact_schemas.study import Trial

    base = {"id": "t1", "kind": "screening", "question": "Which?", "options": [{"id": "o1", "text": "1"}]}
    assert Trial(**base, references=["c1"], segments=[(0.5, 1.5)]).segments == [(0.5, 1.5)]
    with pytest.raises(ValueError, match="one reference clip"):
        Trial(**base, references=["c1", "c2"], segments=[(0.5, 1.5)])
    with pytest.raises(ValueError, match="ends after it starts"):
        Trial(**base, references=["c1"], segments=[(1.5, 0.5)])


def test_screening_files_say_nothing_of_where_the_tone_is(example_package: Path) -> None:
    """Issue 34, an independent attack: in FLAC the sound holding the tone was the one whose
    frames were largest, 6 of 6 demo items from the bytes alone. The headphone check's clips
    (and its example) are now 16-bit PCM WAV, all of one size."""
    from artifact_schemas import load_study

    manifest = load_study(example_package / "study.json")
    clips = [c for t in manifest.trials if t.phase == "screening" for c in t.references]
    assert manifest.screening is not None and manifest.screening.example is not None
    clips.append(manifest.screening.example.clip)
    assert len(clips) >= 4
    files = [example_package / manifest.clips[c].file for c in clips]
    assert {f.suffix for f in files} == {".wav"}
    assert len({f.stat().st_size for f in files}) == 1
    assert {f.read_bytes()[:4] for f in files} == {b"RIFF"}
