"""Issue 34: a package gives nothing away to someone who does not listen, and `check` says so.

The strategies here are computed in the test itself, from study.json and the audio, and
scored with key.json, so they do not trust the check they are testing.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from artifact_schemas import STEERING, load_key, load_study, save_table
from stimuli_builder.check import check_package
from stimuli_builder.cli import app
from stimuli_builder.no_listening import audio_bytes


def _choices_by_list(package: Path) -> dict[str, list[tuple[list[str], int, Any]]]:
    """Per list: its label-choice trials as (option texts, correct index, trial key)."""
    manifest, key = load_study(package / "study.json"), load_key(package / "key.json")
    trials = {t.id: t for t in manifest.trials}
    out: dict[str, list[tuple[list[str], int, Any]]] = defaultdict(list)
    for lst in manifest.lists:
        for tid in lst.trials:
            k = key.trials[tid]
            if k.trial_type == "label_choice":
                ids = [o.id for o in trials[tid].options]
                out[lst.id].append(([o.text for o in trials[tid].options], ids.index(k.correct_option), k))
    return out


def test_no_label_is_right_more_often_than_chance_when_offered(demo_package: Path) -> None:
    """Issue 34.1: "energetic" was offered in 12 of 24 demo choices and right in all 12, and
    the option a list asked to rate elsewhere was right in 66%. Now, within each list, a
    label's offers are right about 1 time in n_foils + 1, and choosing by how often the list
    offers an option, or by whether it asks to rate it, scores chance."""
    manifest, key = load_study(demo_package / "study.json"), load_key(demo_package / "key.json")
    by_list = _choices_by_list(demo_package)
    assert sum(len(v) for v in by_list.values()) >= 12
    scores: dict[str, list[float]] = defaultdict(list)

    def pick(name: str, chosen: list[int], n: int, correct: int) -> None:
        chosen = chosen or list(range(n))
        scores[name].append((correct in chosen) / len(chosen))

    for lst in manifest.lists:
        choices = by_list[lst.id]
        offered = Counter(text for options, _, _ in choices for text in options)
        right = Counter(options[c] for options, c, _ in choices)
        for label, times in offered.items():
            # Right once in 4 offers (n_foils = 3), give or take one offer.
            assert abs(right[label] - times / 4) <= 1, (lst.id, label, right[label], times)
        rated = {key.trials[t].label for t in lst.trials if key.trials[t].trial_type == "label_rating"}
        # No rating trial of the list names a label that answers one of its choices.
        assert not rated & set(right), (lst.id, rated & set(right))
        for options, correct, _ in choices:
            n = len(options)
            counts = [offered[o] for o in options]
            pick("most offered", [i for i in range(n) if counts[i] == max(counts)], n, correct)
            pick("least offered", [i for i in range(n) if counts[i] == min(counts)], n, correct)
            pick("rated elsewhere", [i for i in range(n) if options[i] in rated], n, correct)
            pick("not rated", [i for i in range(n) if options[i] not in rated], n, correct)
    means = {name: sum(v) / len(v) for name, v in scores.items()}
    assert all(m <= 0.25 + 0.1 for m in means.values()), means


def test_steered_position_is_not_a_cycle_per_list(demo_package: Path) -> None:
    """Issue 34.5: each list's three steering trials put the steered clip at 1, 2, 3 once each,
    so knowing two answers gave the third. Now guessing a trial's position as the one the
    list's other steering trials used least scores chance, and per feature the steered clip
    still takes each position equally often."""
    manifest, key = load_study(demo_package / "study.json"), load_key(demo_package / "key.json")
    trials = {t.id: t for t in manifest.trials}
    scores, per_feature = [], defaultdict(Counter)
    for lst in manifest.lists:
        steering = [t for t in lst.trials if key.trials[t].trial_type == "steering"]
        positions = {t: trials[t].candidates.index(key.trials[t].correct_clip) for t in steering}
        assert len(steering) == 3 and len(trials[steering[0]].candidates) == 3
        for t in steering:
            per_feature[key.trials[t].group][positions[t]] += 1
            used = Counter(p for u, p in positions.items() if u != t)
            least = [i for i in range(3) if used[i] == min(used[j] for j in range(3))]
            scores.append((positions[t] in least) / len(least))
    assert sum(scores) / len(scores) <= 1 / 3 + 0.1, scores
    for group, counts in per_feature.items():
        assert max(counts.values()) - min(counts.get(i, 0) for i in range(3)) <= 1, (group, counts)


def test_check_names_every_no_listening_strategy_and_fails_a_leak(demo_package: Path, tmp_path: Path) -> None:
    """Issue 34.2: `check` said "blinding leaks: 0" while always choosing "energetic" scored
    0.625 against chance 0.25. It now prints every strategy with its expected accuracy and
    fails a package where one is more than 10 points above chance."""
    result = CliRunner().invoke(app, ["check", str(demo_package)])
    assert result.exit_code == 0, result.output
    for strategy in (
        "always option 1",
        "the option without which the others are in alphabetical order",
        "the option the list offers most often",
        "an option the list asks to rate elsewhere",
        "the smallest candidate file",
        "a candidate whose audio recurs in the list",
        "position by elimination",
    ):
        assert strategy in result.output, strategy
    assert "blinding leaks: 0" in result.output

    # One label made the answer of every choice trial of a list: the base-rate leak.
    pkg = tmp_path / "pkg"
    shutil.copytree(demo_package, pkg)
    study = json.loads((pkg / "study.json").read_text())
    key = json.loads((pkg / "key.json").read_text())
    first = study["lists"][0]["trials"]
    for t in study["trials"]:
        if t["id"] in first and key["trials"][t["id"]].get("trial_type") == "label_choice":
            answer = key["trials"][t["id"]]["correct_option"]
            for o in t["options"]:
                if o["id"] == answer:
                    o["text"] = "energetic"
    (pkg / "study.json").write_text(json.dumps(study))
    report = check_package(pkg)
    leaks = [x for x in report.blinding_leaks if "no-listening strategy" in x]
    assert any("'the option the list offers most often'" in x and "label_choice" in x for x in leaks), leaks
    assert not report.ok

    # The foils sorted, the answer put in among them (the order of issue 34's attack).
    pkg = tmp_path / "sorted"
    shutil.copytree(demo_package, pkg)
    study = json.loads((pkg / "study.json").read_text())
    for t in study["trials"]:
        if key["trials"][t["id"]].get("trial_type") == "label_choice":
            answer = next(o for o in t["options"] if o["id"] == key["trials"][t["id"]]["correct_option"])
            foils = sorted((o for o in t["options"] if o is not answer), key=lambda o: o["text"].casefold())
            foils.insert(t["options"].index(answer), answer)
            t["options"] = foils
    (pkg / "study.json").write_text(json.dumps(study))
    leaks = check_package(pkg).blinding_leaks
    assert any("alphabetical order" in x and "label_choice" in x for x in leaks), leaks


def _inaudible_run(example_run: Path, tmp_path: Path, *, drop_distances: bool = False) -> Path:
    """The example run with feature 3:13's steered clips replaced by its baseline."""
    run = tmp_path / "run"
    shutil.copytree(example_run, run)
    table = pd.read_parquet(run / "steering" / "steering.parquet")
    same = table["feature_id"] == 13
    for name in table.loc[same, "path"]:
        shutil.copyfile(run / "steering" / "baseline_p0_s0.flac", run / "steering" / name)
    table.loc[same, "steered_db"] = 0.0
    if drop_distances:
        table = table.drop(columns=["steered_db", "random_db"])
    save_table(table, run / "steering" / "steering.parquet", STEERING)
    return run


def test_build_refuses_steered_clips_that_equal_their_baseline(
    example_run: Path, tmp_path: Path, write_config: Any
) -> None:
    """Issue 34.2: steered, baseline and control clips were the same audio and the build
    said "package ok". Now the first such pair is named, and the refusal can be overridden."""
    run = _inaudible_run(example_run, tmp_path)
    config = write_config(tmp_path / "cfg")
    result = CliRunner().invoke(
        app, ["build", str(config), "--bundle", str(run), "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "steering.min_distance_db" in text
    assert "feature 3:13, prompt 'Simple melody', seed 0, strength 1 is 0.00 dB from its baseline" in text
    assert "steering.allow_inaudible" in text
    assert not (tmp_path / "s").exists()

    override = write_config(
        tmp_path / "cfg2", "", **{'mode = "two_way"': 'mode = "two_way"\nallow_inaudible = true'}
    )
    result = CliRunner().invoke(
        app, ["build", str(override), "--bundle", str(run), "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output


def test_build_refuses_a_run_without_distances_by_name(
    example_run: Path, tmp_path: Path, write_config: Any
) -> None:
    """A steering table from before sae-core steer measured distances: refused with what to do
    (re-run steer, or the override), not built unchecked."""
    run = _inaudible_run(example_run, tmp_path, drop_distances=True)
    config = write_config(tmp_path / "cfg")
    result = CliRunner().invoke(
        app, ["build", str(config), "--bundle", str(run), "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert re.search(r"has none for the steered clip of feature 3:\d+, prompt 'Simple melody', seed 0", text)
    assert "re-run sae-core steer" in text


def test_a_few_lucky_guesses_are_not_a_leak_but_many_are() -> None:
    """3 of 4 four-option checks right is what guessing gives 5% of the time (p = 0.051):
    with other SAE labels the demo's instructed checks read so and make demo stopped. The
    same share over 24 trials is no luck."""
    from stimuli_builder.no_listening import StrategyResult

    few = StrategyResult("attention:instructed", "least offered", 4, 0.75, 0.25)
    many = StrategyResult("label_choice", "least offered", 24, 0.75, 0.25)
    assert few.p_value == pytest.approx(0.0508, abs=1e-4) and not few.leak
    assert many.leak and StrategyResult("x", "y", 4, 1.0, 0.25).leak


def _flac(samples: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _padded(data: bytes, size: int) -> bytes:
    """FLAC ``data`` grown to ``size`` bytes by a PADDING block: the earlier design."""
    pos = 4
    while not data[pos] & 0x80:  # to the last metadata block, which stops being the last
        pos += 4 + int.from_bytes(data[pos + 1 : pos + 4], "big")
    end = pos + 4 + int.from_bytes(data[pos + 1 : pos + 4], "big")
    extra = size - len(data)
    block = bytes([0x80 | 1]) + (extra - 4).to_bytes(3, "big") + bytes(extra - 4)
    return data[:pos] + bytes([data[pos] & 0x7F]) + data[pos + 1 : end] + block + data[end:]


def test_check_sees_through_padding_to_one_size(demo_package: Path, tmp_path: Path) -> None:
    """Issue 34: compressed clips padded to one size still told the steered clip apart (the
    one FLAC file without padding, 12 of 12 demo trials, an independent attack found). The
    builder now writes compared clips as PCM WAV; `check` measures the audio data less
    padding, and fails the demo package with its steering clips padded FLAC as before."""
    pkg = tmp_path / "pkg"
    shutil.copytree(demo_package, pkg)
    study = json.loads((pkg / "study.json").read_text())
    key = json.loads((pkg / "key.json").read_text())
    for t in study["trials"]:
        if key["trials"][t["id"]].get("trial_type") != "steering":
            continue
        flac = {c: _flac(*sf.read(pkg / study["clips"][c]["file"], dtype="int16")) for c in t["candidates"]}
        size = max(len(f) for f in flac.values()) + 4
        for c, plain in flac.items():
            data = _padded(plain, size)
            assert audio_bytes(data) == len(plain)  # the padding block is what is left out
            (pkg / study["clips"][c]["file"]).write_bytes(data)
            study["clips"][c]["sha256"] = hashlib.sha256(data).hexdigest()
    (pkg / "study.json").write_text(json.dumps(study))
    report = check_package(pkg)
    leaks = [x for x in report.blinding_leaks if "no-listening strategy" in x]
    # (the most data in the demo, the least on the test's untrained model: either gives it away)
    assert any("audio data (size less padding)' scores" in x and "steering" in x for x in leaks), leaks
    assert not report.ok
    # The package as built has no such leak: one WAV size, no padding anywhere.
    assert not [x for x in check_package(demo_package).blinding_leaks if "audio data" in x]


def test_lists_share_no_example_clip_so_pooled_lists_name_no_answer(
    demo_package: Path, tmp_path: Path
) -> None:
    """Issue 34, an independent attack: a feature's example clips had one id in every list,
    so participants pooling their lists (or anyone holding study.json) read a choice trial's
    answer off the rating trial of another list that played the same clips: 0.53-0.59
    against chance 0.25. Each list now plays its own render of an example (its own id,
    bytes and samples), and linking clips by id or file across the study scores chance."""
    manifest, key = load_study(demo_package / "study.json"), load_key(demo_package / "key.json")
    trials = {t.id: t for t in manifest.trials}
    lists_of: dict[str, set[str]] = defaultdict(set)
    renders: dict[str, list[str]] = defaultdict(list)  # source -> its example clips
    for lst in manifest.lists:
        for tid in lst.trials:
            for c in trials[tid].references:
                if key.clips[c].role == "example" and trials[tid].phase == "main":
                    lists_of[c].add(lst.id)
                    renders[key.clips[c].source].append(c)
    assert lists_of and all(len(v) == 1 for v in lists_of.values())

    def samples(c: str) -> np.ndarray:
        return sf.read(demo_package / manifest.clips[c].file, dtype="int16")[0].astype(np.int32)

    shared = [sorted(set(v)) for v in renders.values() if len(set(v)) > 1]
    assert len(shared) >= 4
    for clips in shared:
        a, b = samples(clips[0]), samples(clips[1])
        assert manifest.clips[clips[0]].sha256 != manifest.clips[clips[1]].sha256
        assert manifest.clips[clips[0]].duration_s == manifest.clips[clips[1]].duration_s
        # not the same samples: more apart than the dither (check's "same" allows 4 steps)
        assert a.shape == b.shape and np.abs(a - b).max() > 16

    # The colluders' strategy, scored here: pick an option that a rating trial anywhere
    # in the study asks about with a clip of the same id or file.
    def file_of(c: str) -> str:
        return hashlib.sha256((demo_package / manifest.clips[c].file).read_bytes()).hexdigest()

    ratings = [t for t in manifest.trials if key.trials[t.id].trial_type == "label_rating"]
    rated_by_file: dict[str, list[str]] = defaultdict(list)
    for r in ratings:
        for c in r.references:
            rated_by_file[file_of(c)].append(r.question.casefold())
    scores = []
    for trial in manifest.trials:
        if key.trials[trial.id].trial_type != "label_choice":
            continue
        options = [o.text.casefold() for o in trial.options]
        correct = [o.id for o in trial.options].index(key.trials[trial.id].correct_option)
        questions = [q for c in trial.references for q in rated_by_file[file_of(c)]]
        chosen = [i for i, o in enumerate(options) if any(o in q for q in questions)]
        chosen = chosen or list(range(len(options)))
        scores.append((correct in chosen) / len(chosen))
    assert len(scores) >= 12 and sum(scores) / len(scores) <= 0.25 + 0.1, scores

    # The check scores the same strategy, and fails a package whose lists share the clips.
    report = check_package(demo_package)
    name = "an option rated with the same example clips in any list"
    mine = [r for r in report.strategies if r.strategy == name]
    assert "label_choice" in {r.trial_type for r in mine} and not any(r.leak for r in mine), mine
    pkg = tmp_path / "pkg"
    shutil.copytree(demo_package, pkg)
    study = json.loads((pkg / "study.json").read_text())
    choice_refs = {
        key.trials[t["id"]].group: t["references"]
        for t in study["trials"]
        if key.trials[t["id"]].trial_type == "label_choice"
    }
    for t in study["trials"]:
        if key.trials[t["id"]].trial_type == "label_rating" and key.trials[t["id"]].group in choice_refs:
            t["references"] = choice_refs[key.trials[t["id"]].group]
    (pkg / "study.json").write_text(json.dumps(study))
    leaks = check_package(pkg).blinding_leaks
    assert any(name in x and "label_choice" in x for x in leaks), leaks
