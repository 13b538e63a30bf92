"""Issue 31: attention checks only listening answers (31.5), ids that say nothing (31.7)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from artifact_schemas import load_key, load_study
from stimuli_builder.audio_prep import resample
from stimuli_builder.build import build_package
from stimuli_builder.bundle import load_bundle, select_features
from stimuli_builder.check import check_package
from stimuli_builder.config import load_config
from stimuli_builder.design import build_design
from stimuli_builder.foils import FoilPicker
from stimuli_builder.package import CANDIDATE_SHIFT_S

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "demo-study" / "study.toml"


def _ids(root: Path) -> dict[str, set[str]]:
    manifest = load_study(root / "study.json")
    return {
        "trial": {t.id for t in manifest.trials},
        "option": {o.id for t in manifest.trials for o in t.options},
        "list": {lst.id for lst in manifest.lists},
        "clip": set(manifest.clips),
    }


def _h(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def test_ids_are_drawn_per_build_not_hashed_from_the_seed(
    example_run: Path, tmp_path: Path, write_config: Any
) -> None:
    """Issue 31.7: trial ids were sha256(seed|trial key), so the seed fell out of a screening
    trial's id by trying small numbers, and every id decoded to e.g. 'steering|3:237|list1';
    clip ids were sha256(content|use), content being the sha256 of the file anyone fetches."""
    config = write_config(tmp_path / "cfg")
    for name in ("a", "b"):
        build_package(config, example_run, tmp_path / name)
    a, b = _ids(tmp_path / "a"), _ids(tmp_path / "b")
    for kind in a:
        assert a[kind] and not a[kind] & b[kind], kind  # same seed, new ids

    # Nor does any id equal a hash of what it stands for, under any small seed.
    cfg, _ = load_config(config)
    bundle = load_bundle(example_run)
    features = select_features(bundle, cfg, config)
    pool = [] if bundle.labels is None else list(bundle.labels["label"])
    lv = cfg.label_validation
    design = build_design(features, cfg, FoilPicker(pool, lv.synonyms, lv.foil_strategy, lv.clap_model))
    guesses = set()
    for seed in range(100):
        for spec_key, spec in design.trials.items():
            guesses.add("t" + _h(seed, spec_key)[:12])
            guesses |= {"o" + _h(seed, spec_key, i, text)[:10] for i, text in enumerate(spec.options)}
        guesses |= {"l" + _h(seed, i)[:8] for i in range(len(design.lists))}
    manifest = load_study(tmp_path / "a" / "study.json")
    uses = ["", *design.trials, *(f"{k}|{s}" for k in design.trials for s in "ab")]
    guesses |= {"c" + _h(c.sha256, use)[:16] for c in manifest.clips.values() for use in uses}
    assert not set().union(*a.values()) & guesses
    # The key maps them: every trial of the manifest has its entry there.
    assert set(load_key(tmp_path / "a" / "key.json").trials) == a["trial"]


def _match(clip: np.ndarray, template: np.ndarray) -> float:
    """Best normalised cross-correlation of ``template`` anywhere in ``clip``."""
    c = signal.correlate(clip, template, mode="valid", method="fft")
    sums = np.concatenate([[0.0], np.cumsum(clip**2)])
    energy = np.sqrt(np.maximum(sums[template.shape[0] :] - sums[: -template.shape[0]], 1e-12))
    return float(np.max(np.abs(c) / (energy * np.linalg.norm(template))))


def test_attention_checks_are_answered_only_by_listening(demo_package: Path, tmp_path: Path) -> None:
    """Issue 31.5: every identical pair's answer was "They sound the same", and an instructed
    check printed its answer in the question ("please choose “piano”")."""
    manifest = load_study(demo_package / "study.json")
    key = load_key(demo_package / "key.json")
    config, _ = load_config(DEMO_CONFIG)  # the package's config.toml, whose texts lie beside the demo's
    sr = config.audio.sample_rate
    checks = [t for t in manifest.trials if key.trials[t.id].trial_type == "attention"]
    pairs = [t for t in checks if key.trials[t.id].check == "identical_pair"]
    instructed = [t for t in checks if key.trials[t.id].check == "instructed"]
    assert len(pairs) >= 2 and len(instructed) >= 2

    def answer(t: Any) -> int:
        return [o.id for o in t.options].index(key.trials[t.id].correct_option)

    # Identical pairs: "same" and "different" both occur, and the audio says which: a "same"
    # pair is one clip at two start offsets (issue 34.5: with equal samples, comparing them
    # answered every check without listening), a "different" one barely correlates.
    assert {answer(t) for t in pairs} == {0, 1}
    for t in pairs:
        a, b = (sf.read(demo_package / manifest.clips[c].file)[0] for c in t.candidates)
        # The samples never line up: they differ by far more than dither (16-bit steps are
        # 3e-5), though smooth music at two nearby offsets may differ by only 0.01 or less.
        assert np.abs(a - b).max() > 0.001, t.id
        cut = int(CANDIDATE_SHIFT_S * sr) + 1  # either clip may start later in the source
        same = max(_match(a, b[:-cut]), _match(b, a[:-cut])) > 0.99
        assert same == (t.options[answer(t)].text == "They sound the same"), t.id
        if not same:  # not a nuance: the two barely correlate
            assert abs(np.corrcoef(a, b)[0, 1]) < 0.5, t.id

    # Instructed: the page shows the study's own label-choice question and no answer; one
    # example says the answer's number aloud, and the answers are not all in one place.
    from stimuli_builder.attention import VOICE_DIR  # new with issue 31.5: imported here, after

    choice_question = config.label_validation.question_choice
    assert len({answer(t) for t in instructed}) > 1
    numbers = [
        resample(sf.read(str(VOICE_DIR / "en" / f"number-{n}.flac"))[0], 16000, sr)
        for n in range(1, len(instructed[0].options) + 1)
    ]
    for t in instructed:
        assert t.question == choice_question
        assert not any(o.text.casefold() in t.question.casefold() for o in t.options)
        spoken = [c for c in t.references if key.clips[c].role == "attention"]
        assert len(spoken) == 1 and len(t.references) == config.label_validation.examples_per_trial
        clip = sf.read(demo_package / manifest.clips[spoken[0]].file)[0]
        scores = [_match(clip, n) for n in numbers]
        assert int(np.argmax(scores)) == answer(t), (t.id, scores)
        assert max(scores) > 0.9
    # Which number is said cannot be read off the clip's length, nor that a trial is a check:
    # the voiced clip is as long as every example (issue 34: 6.05 s against 4.0 s).
    voiced = [c for t in instructed for c in t.references if key.clips[c].role == "attention"]
    examples = [
        c
        for t in manifest.trials
        if t.phase == "main"
        for c in t.references
        if key.clips[c].role == "example"
    ]
    assert {manifest.clips[c].duration_s for c in voiced} == {manifest.clips[c].duration_s for c in examples}

    report = check_package(demo_package)
    assert report.ok, report.problems

    # check: an answer printed in the question, one answer for every check.
    pkg = tmp_path / "pkg"
    shutil.copytree(demo_package, pkg)
    data = json.loads((pkg / "key.json").read_text())
    for t in pairs:
        data["trials"][t.id]["correct_option"] = t.options[0].id
    (pkg / "key.json").write_text(json.dumps(data))
    study = json.loads((pkg / "study.json").read_text())
    row = next(r for r in study["trials"] if r["id"] == instructed[0].id)
    row["question"] = f"Please choose “{instructed[0].options[answer(instructed[0])].text}”."
    (pkg / "study.json").write_text(json.dumps(study))
    leaks = check_package(pkg).blinding_leaks
    same = f"attention checks (identical_pair): all {len(pairs)} have the answer 'They sound the same'"
    assert same in leaks
    assert any(f"attention trial {instructed[0].id}: its question contains its answer" in x for x in leaks)


def test_a_voice_fits_its_clip_or_the_build_says_how_long_clips_must_be() -> None:
    """The spoken instruction keeps the music's length: centred, sped up a little where the
    clip is short, and refused, with the length needed, where it cannot fit."""
    from stimuli_builder.attention import voice, with_voice

    sr = 16000
    speech = voice(1, sr, "en")
    music = np.sin(2 * np.pi * 220 * np.arange(4 * sr) / sr) * 0.1
    out = with_voice(music, speech, sr)
    assert out.shape == music.shape
    # The music plays alone at both ends, ducked (and voiced) in the middle.
    assert np.allclose(out[:100], music[:100]) and np.allclose(out[-100:], music[-100:])
    short = music[: int(2.0 * sr)]
    with pytest.raises(ValueError, match=r"at least 2\.99 s; this one is 2\.00 s"):
        with_voice(short, speech, sr)
    tight = music[: int(3.3 * sr)]  # room 2.8 s for 3.24 s of speech: sped up 1.16x
    assert with_voice(tight, speech, sr).shape == tight.shape
