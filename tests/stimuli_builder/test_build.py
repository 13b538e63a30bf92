"""Building and checking packages: reproducible rebuilds, blinding, audio levels, bad input."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from typer.testing import CliRunner

from artifact_schemas import load_key, load_run_record, load_study
from stimuli_builder.audio_prep import true_peak_dbtp
from stimuli_builder.build import build_package
from stimuli_builder.check import check_package
from stimuli_builder.cli import app


def canonical_package(root: Path) -> dict[str, Any]:
    """A package with every id replaced by a name from its content (trial 3 in the order of
    what trials show, its option 1, list 2, the n-th clip met), trials and lists in that
    order: two builds of one seed and salt must be equal so, not byte for byte, since ids
    and the order study.json lists trials in are drawn at random per build (issues 31, 34)."""
    manifest = load_study(root / "study.json")

    def shows(t: Any) -> str:
        clips = [[manifest.clips[c].sha256 for c in cs] for cs in (t.references, t.candidates)]
        return json.dumps([t.phase, t.kind, t.question, clips, [o.text for o in t.options]])

    names: dict[str, str] = {}
    for i, t in enumerate(sorted(manifest.trials, key=shows)):
        names[t.id] = f"trial{i}"
        names.update({o.id: f"trial{i}.option{j}" for j, o in enumerate(t.options)})
        for c in (*t.references, *t.candidates):
            names.setdefault(c, f"clip{len(names)}")
    lists = sorted(manifest.lists, key=lambda lst: sorted(names[t] for t in lst.trials))
    names.update({lst.id: f"list{i}" for i, lst in enumerate(lists)})
    if manifest.calibration_clip:
        names.setdefault(manifest.calibration_clip, "calibration")
    if manifest.screening and manifest.screening.example:
        names.setdefault(manifest.screening.example.clip, "screening-example")
    assert set(manifest.clips) <= set(names)

    def rename(obj: Any) -> Any:
        if isinstance(obj, str):
            return names.get(obj, obj)
        if isinstance(obj, dict):
            return {rename(k): rename(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [rename(v) for v in obj]
        return obj

    study = json.loads((root / "study.json").read_text())
    for clip in study["clips"].values():
        clip["file"] = None  # audio/<id>.flac: compared by content below
    study = rename(study)
    study["trials"].sort(key=lambda t: t["id"])
    study["lists"].sort(key=lambda lst: lst["id"])
    for lst in study["lists"]:
        lst["trials"].sort()
    keys = json.loads((root / "key.json").read_text())
    del keys["manifest_sha256"]
    audio = {names[cid]: (root / c.file).read_bytes() for cid, c in manifest.clips.items()}
    return {"study": study, "key": rename(keys), "audio": audio, "ids": set(names)}


def test_a_build_is_secret_and_its_salt_rebuilds_it_under_new_ids(
    example_run: Path, tmp_path: Path, write_config: Any
) -> None:
    """Issue 34: a design drawn from the seed alone was found by trying seeds 0 to 10^6
    against study.json (the demo's was 7), and with it every answer. Each build now mixes
    in a salt of its own (run.json records it): the same seed builds another study, and
    the recorded salt rebuilds the same one."""
    config = write_config(tmp_path / "cfg", **{'salt = "c0ffee00c0ffee00c0ffee00c0ffee00"': ""})
    build_package(config, example_run, tmp_path / "a")
    build_package(config, example_run, tmp_path / "other")
    a = canonical_package(tmp_path / "a")
    assert canonical_package(tmp_path / "other")["key"] != a["key"]  # same seed, new secret
    salt = json.loads((tmp_path / "a" / "run.json").read_text())["config"]["study"]["salt"]
    assert len(salt) == 32 and salt not in (tmp_path / "a" / "study.json").read_text()
    again = write_config(tmp_path / "cfg2", **{"c0ffee00c0ffee00c0ffee00c0ffee00": salt})
    build_package(again, example_run, tmp_path / "b")
    b = canonical_package(tmp_path / "b")
    for part in ("study", "key", "audio"):
        assert a[part] == b[part], part
    assert not a["ids"] & b["ids"]  # the ids alone are new
    # ... and the order study.json lists them in: nothing follows from the design's order.
    assert [t.kind for t in load_study(tmp_path / "a" / "study.json").trials] != [
        t.kind for t in load_study(tmp_path / "b" / "study.json").trials
    ]


def test_check_reports_balance_positions_and_no_leak(example_package: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(example_package)])
    assert result.exit_code == 0, result.output
    assert "package ok" in result.output
    report = check_package(example_package)
    assert report.balance_spread and max(report.balance_spread.values()) <= 1
    manifest = load_study(example_package / "study.json")
    key = load_key(example_package / "key.json")
    trials = {t.id: t for t in manifest.trials}
    firsts: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for lst in manifest.lists:
        for tid in lst.trials:
            k = key.trials[tid]
            if k.trial_type == "steering" and k.group:
                totals[k.group] += 1
                firsts[k.group] += key.clips[trials[tid].candidates[0]].role == "steered"
    assert len(totals) == 3
    assert all(abs(firsts[g] - totals[g] / 2) <= 1 for g in totals), (firsts, totals)
    assert report.steered_first == {g: firsts[g] / totals[g] for g in totals}
    assert len(manifest.lists) == 4 and report.blinding_leaks == []


def test_public_files_hold_no_key_information(example_package: Path) -> None:
    """grep-level: study.json and audio file names carry no feature/layer id, role or labeler."""
    key = load_key(example_package / "key.json")
    public = (example_package / "study.json").read_text().casefold()
    names = " ".join(p.name for p in (example_package / "audio").iterdir()).casefold()
    labelers = {t.labeler for t in key.trials.values() if t.labeler}
    assert labelers == {"descriptors", "clap-vocab"}
    for word in ("steer", "baseline", "random", "layer", "feature", "correct", *labelers):
        assert word not in public, word
        assert word not in names, word
    for t in key.trials.values():
        if t.feature_id is not None:
            assert not re.search(rf"\bf0*{t.feature_id}\b|\"{t.feature_id}\"", public)
    sources = {Path(c.source).stem.casefold() for c in key.clips.values()}
    assert not any(s in public or s in names for s in sources)
    # The correct answer and its clip live only in key.json.
    assert all(t.correct_option or t.trial_type == "label_rating" for t in key.trials.values())
    assert "correct_option" not in public


def test_check_finds_tampering_and_leaks(example_package: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(example_package, pkg)
    audio = sorted((pkg / "audio").iterdir())
    audio[0].write_bytes(audio[0].read_bytes()[:-10])
    data = json.loads((pkg / "study.json").read_text())
    data["trials"][-1]["question"] = "Which clip is the steered one?"
    (pkg / "study.json").write_text(json.dumps(data))
    report = check_package(pkg)
    text = "\n".join(report.problems)
    assert f"{audio[0].relative_to(pkg)}: checksum differs" in text
    assert "study.json: checksum differs" in text
    assert any("steer" in leak for leak in report.blinding_leaks)
    assert CliRunner().invoke(app, ["check", str(pkg)]).exit_code == 1


def test_audio_is_normalised_limited_and_resampled(example_package: Path) -> None:
    manifest = load_study(example_package / "study.json")
    key = load_key(example_package / "key.json")
    meter = pyloudnorm.Meter(16000)
    for cid, clip in manifest.clips.items():
        audio, sr = sf.read(example_package / clip.file)
        assert sr == 16000
        assert abs(len(audio) / sr - clip.duration_s) < 0.01
        if key.clips[cid].role == "screening":
            assert audio.ndim == 2  # dichotic stimuli stay stereo, at their calibrated level
            continue
        peak, loudness = true_peak_dbtp(audio), meter.integrated_loudness(audio)
        assert peak <= -1.0 + 0.1
        # At the loudness target, or quieter where the true-peak ceiling held it back (a
        # drum pattern's peaks stand far above its loudness): the ceiling comes first.
        assert loudness == pytest.approx(-23.0, abs=0.5) or (loudness < -23.0 and peak > -1.0 - 0.1), cid


def test_run_record_includes_input_provenance(example_package: Path) -> None:
    record = load_run_record(example_package / "run.json")
    assert record.stage == "stimuli-build"
    assert record.config["study"]["seed"] == 3
    assert any(p.path.endswith("labels.parquet") for p in record.inputs)


@pytest.mark.parametrize("problem", ["silent", "clipped"])
def test_bad_source_audio_is_named_and_nothing_is_written(
    example_run: Path, tmp_path: Path, write_config: Any, problem: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(example_run, run)
    victim = sorted((run / "features" / "layer_3" / "clips").iterdir())[0]
    audio, sr = sf.read(victim)
    sf.write(victim, np.zeros_like(audio) if problem == "silent" else np.clip(audio * 20, -1, 1), sr)
    config = write_config(tmp_path / "cfg", **{"per_list = 4": "per_list = 6"})
    result = CliRunner().invoke(
        app, ["build", str(config), "--bundle", str(run), "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert victim.name in result.output and problem in result.output
    assert not (tmp_path / "s").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".s")] == []


def test_existing_package_is_kept_without_force(example_run: Path, tmp_path: Path, write_config: Any) -> None:
    out = tmp_path / "s"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    config = write_config(tmp_path / "cfg")
    result = CliRunner().invoke(app, ["build", str(config), "--bundle", str(example_run), "--out", str(out)])
    assert result.exit_code == 1 and "--force" in result.output
    assert (out / "keep.txt").read_text() == "mine"


def test_three_way_needs_random_controls(example_run: Path, tmp_path: Path, write_config: Any) -> None:
    config = write_config(tmp_path / "cfg", **{'"two_way"': '"three_way"'})
    manifest, key = build_package(config, example_run, tmp_path / "s")
    roles = {
        key.clips[c].role
        for t in manifest.trials
        if key.trials[t.id].trial_type == "steering"
        for c in t.candidates
    }
    assert roles == {"steered", "baseline", "random_direction"}
    assert all(len(t.candidates) == 3 for t in manifest.trials if key.trials[t.id].trial_type == "steering")


def test_each_list_has_screening_practice_and_spread_catch_trials(example_package: Path) -> None:
    manifest = load_study(example_package / "study.json")
    key = load_key(example_package / "key.json")
    assert manifest.screening is not None and manifest.screening.kind == "huggins"
    for lst in manifest.lists:
        types = [key.trials[t].trial_type for t in lst.trials]
        assert types.count("screening") == 6 and types.count("practice") == 2
        assert types.count("attention") >= 1
    assert manifest.calibration_clip in manifest.clips
    assert [q.id for q in manifest.questionnaire] == ["device"]
    assert "<b>listen</b>" in manifest.texts.consent  # stored as written; the app escapes it


def test_labels_with_too_few_foils_leave_label_choice_not_the_build(
    example_run: Path, tmp_path: Path, write_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A labeler that gives every feature the same words (an untrained CLAP) used to fail the
    whole build with 'only 2 labels can serve as foils'; now only those labels sit out."""
    import pandas as pd

    from artifact_schemas import LABELS, save_table

    run = tmp_path / "run"
    shutil.copytree(example_run, run)
    labels = pd.read_parquet(run / "labels.parquet")
    # Every feature: the same three clap-vocab words; four features one descriptor word each.
    # Feature 3:3 also has two of those words, so its own labels leave 2 foils (3 needed).
    features = labels[["layer", "feature_id"]].drop_duplicates().to_records(index=False)
    words = ["bright piano", "dark strings", "fast tempo", "slow tempo"]
    rows = []
    for i, (layer, fid) in enumerate(features):
        for w in ("energetic", "string ensemble", "plucked strings"):
            rows.append(dict(feature_id=fid, layer=layer, labeler="clap-vocab", label=w, confidence=0.3))
        if i < len(words):
            rows.append(
                dict(feature_id=fid, layer=layer, labeler="descriptors", label=words[i], confidence=1.0)
            )
    for w in words[:2]:
        rows.append(dict(feature_id=3, layer=3, labeler="descriptors", label=w, confidence=0.9))
    table = pd.DataFrame(rows)
    table["clap_score"] = 0.2
    save_table(table, run / "labels.parquet", LABELS)

    config = write_config(tmp_path / "cfg")
    result = CliRunner().invoke(
        app, ["build", str(config), "--bundle", str(run), "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith("feature 3:3: left out of label choice") for m in warned), warned
    # Issue 34.1: "energetic", a label of every feature, can be no one's foil, so as an
    # answer it would be right every time it is offered: it sits out, named with its numbers.
    assert any(
        m.startswith(
            "label 'energetic' left out of label choice: it answers 11 feature(s)' choices but can "
            "be a foil for only 0"
        )
        for m in warned
    ), warned
    key = load_key(tmp_path / "s" / "key.json")
    choice = [k for k in key.trials.values() if k.trial_type == "label_choice"]
    assert choice and "3:3" not in {k.group for k in choice}
    assert "energetic" not in {k.label for k in choice}
    # Features with a label that has 3 foils and a base rate that can be balanced still get
    # label-choice trials (the four with a descriptor word of their own)...
    assert {k.group for k in choice} == {f"{layer}:{fid}" for layer, fid in features[: len(words)]} - {"3:3"}
    # ... and 3:3 keeps its rating trials: only the choice format lacks foils.
    assert "3:3" in {k.group for k in key.trials.values() if k.trial_type == "label_rating"}
    record = load_run_record(tmp_path / "s" / "run.json")
    assert any("3:3" in w and "label choice" in w for w in record.warnings), record.warnings
    assert check_package(tmp_path / "s").ok


def test_compared_clips_cannot_be_told_apart_without_listening(demo_package: Path, tmp_path: Path) -> None:
    """Issue 16.3: the steered clip was the smallest file in 10 of 12 steering trials, and the
    baseline had the same bytes in every trial of a list. Now each trial's compared clips
    have one size and one length, and none of their bytes recur anywhere in the package."""
    import hashlib

    manifest = load_study(demo_package / "study.json")
    key = load_key(demo_package / "key.json")
    digests = Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in (demo_package / "audio").iterdir())
    compared = [t for t in manifest.trials if len(t.candidates) >= 2]
    assert sum(key.trials[t.id].trial_type == "steering" for t in compared) >= 12
    for t in compared:
        files = [demo_package / manifest.clips[c].file for c in t.candidates]
        assert len({f.stat().st_size for f in files}) == 1, t.id
        decoded = [sf.read(f, dtype="int16")[0] for f in files]
        assert len({len(d) for d in decoded}) == 1, t.id
        # Issue 34: nothing but the samples differs. Compressed clips padded to one size
        # gave the steered clip away by the size of their padding block (12 of 12 trials).
        assert {sf.info(str(f)).format for f in files} == {"WAV"}, t.id
        (data_start,) = {f.read_bytes().index(b"data") for f in files}
        assert len({f.read_bytes()[: data_start + 8] for f in files}) == 1, t.id
        for f in files:
            assert digests[hashlib.sha256(f.read_bytes()).hexdigest()] == 1, f.name
    # Issue 34.5: no two compared clips anywhere have the same decoded samples, not even up
    # to dither: a list's shared baseline (within 2 steps of itself from trial to trial)
    # picked itself out in 8 of 12 trials, and an identical pair's "same" clips said "same".
    samples = [
        (t.id, sf.read(demo_package / manifest.clips[c].file, dtype="int16")[0].astype(int))
        for t in compared
        for c in t.candidates
    ]
    for (ta, a), (tb, b) in itertools.combinations(samples, 2):
        if a.shape == b.shape:
            assert np.abs(a - b).max() > 4, (ta, tb)
    # One modification time for all: nginx's Last-Modified and default ETag say nothing.
    assert {p.stat().st_mtime for p in (demo_package / "audio").iterdir()} == {946684800}

    result = CliRunner().invoke(app, ["check", str(demo_package)])
    assert result.exit_code == 0 and "blinding leaks: 0" in result.output, result.output
    # The new detectors: a trial whose clips differ in size, a rating that answers a choice.
    pkg = tmp_path / "pkg"
    shutil.copytree(demo_package, pkg)
    steering = next(t for t in compared if key.trials[t.id].trial_type == "steering")
    first = pkg / manifest.clips[steering.candidates[0]].file
    first.write_bytes(first.read_bytes()[:-100])
    data = json.loads((pkg / "key.json").read_text())
    lst = manifest.lists[0]
    choice = next(t for t in lst.trials if key.trials[t].trial_type == "label_choice")
    rating = next(t for t in lst.trials if key.trials[t].trial_type == "label_rating" and key.trials[t].group)
    data["trials"][rating]["group"] = key.trials[choice].group
    data["trials"][rating]["label"] = key.trials[choice].label
    (pkg / "key.json").write_text(json.dumps(data))
    leaks = "\n".join(check_package(pkg).blinding_leaks)
    assert f"trial {steering.id}: the clips it compares differ in byte size" in leaks
    assert "gives away its label choice" in leaks and lst.id in leaks


def test_no_list_rates_the_answer_of_its_own_label_choice(demo_package: Path) -> None:
    manifest = load_study(demo_package / "study.json")
    key = load_key(demo_package / "key.json")
    both = 0
    for lst in manifest.lists:
        keys = [key.trials[t] for t in lst.trials]
        answers = {k.group: k.label for k in keys if k.trial_type == "label_choice"}
        for k in keys:
            if k.trial_type == "label_rating" and k.group in answers:
                both += 1
                assert k.label != answers[k.group], (lst.id, k.group)
    assert both > 0  # the demo's lists do ask some features both ways


@pytest.mark.parametrize(("umask", "dirs", "files"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_package_is_readable_by_the_web_server(
    example_run: Path, tmp_path: Path, write_config: Any, umask: int, dirs: int, files: int
) -> None:
    """Issue 31.6: the package kept mkdtemp's 0700 after its rename, and nginx (www-data)
    answered 403 for every clip until someone ran chmod. Every mode now follows the umask,
    as mkdir's and open()'s do: key.json included (``study-app import`` reads it as the
    service user; nginx never serves it)."""
    config = write_config(tmp_path)
    old = os.umask(umask)
    try:
        build_package(config, example_run, tmp_path / "pkg")
    finally:
        os.umask(old)
    paths = [tmp_path / "pkg", *(tmp_path / "pkg").rglob("*")]
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert {m for p, m in modes.items() if (tmp_path / p).is_dir()} == {dirs}, modes
    assert {m for p, m in modes.items() if (tmp_path / p).is_file()} == {files}, modes
    assert modes["pkg/key.json"] == files


def test_a_build_that_draws_its_salt_never_gives_an_answer_away(
    example_run: Path, tmp_path: Path, write_config: Any
) -> None:
    """With a salt drawn per build, a third of this small config's designs made a list rate
    the answer of one of its label choices (check failed them). A build that draws its salt
    now draws again while the design gives an answer away: six builds all pass check (with
    the first draw alone, all six passing had a chance of (2/3)^6 = 9%)."""
    config = write_config(tmp_path / "cfg", **{'salt = "c0ffee00c0ffee00c0ffee00c0ffee00"': ""})
    for i in range(6):
        build_package(config, example_run, tmp_path / f"p{i}")
        report = check_package(tmp_path / f"p{i}")
        assert report.ok and not report.blinding_leaks, report.problems


def test_the_key_carries_each_trials_options_and_chance(example_package: Path, tmp_path: Path) -> None:
    """Chance travels with the answers (issue 36): key.json gives every trial with options
    its n_options and chance = 1 / n_options (label choice: foils + 1; steering: its clips;
    attention checks: theirs), and none for a rating, so whoever reads the key tests
    against the trial's own chance. A key whose count is not the trial's is refused."""
    manifest = load_study(example_package / "study.json")
    key = load_key(example_package / "key.json", manifest)
    seen: dict[str, set[int | None]] = {}
    for t in manifest.trials:
        k = key.trials[t.id]
        seen.setdefault(str(k.trial_type), set()).add(k.n_options)
        if t.options:
            assert k.n_options == len(t.options) and k.chance == pytest.approx(1 / len(t.options)), t.id
        else:
            assert k.n_options is None and k.chance is None, t.id
    assert seen["label_choice"] == {4} and seen["steering"] == {2} and seen["label_rating"] == {None}

    raw = json.loads((example_package / "key.json").read_text())
    choice = next(t.id for t in manifest.trials if key.trials[t.id].trial_type == "label_choice")
    raw["trials"][choice] |= {"n_options": 3, "chance": 1 / 3}
    (tmp_path / "key.json").write_text(json.dumps(raw))
    with pytest.raises(Exception, match="n_options differs from the trial's options"):
        load_key(tmp_path / "key.json", manifest)
    raw["trials"][choice] |= {"n_options": 4, "chance": 0.5}
    (tmp_path / "key.json").write_text(json.dumps(raw))
    with pytest.raises(Exception, match="chance must be 1 / n_options"):
        load_key(tmp_path / "key.json")
