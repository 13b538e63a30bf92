"""Issue 36: a study built from a folder of one's own clips and a CSV of their conditions.

The clips are real audio files (stimuli_builder.example.write_example_stimuli: three items,
each a reference, two conditions and an anchor, 2 s at 16 kHz); the assertions read the
package as the app and a curious participant would: study.json, key.json, the audio files.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from typer.testing import CliRunner

from artifact_schemas import AnswerKey, ArtifactError, load_key, load_run_record, load_study
from stimuli_builder.build import build_package
from stimuli_builder.check import check_package
from stimuli_builder.cli import app
from stimuli_builder.config import load_config
from stimuli_builder.example import write_example_stimuli

ITEMS = {"melody", "chords", "bass"}
CONDITIONS = {
    "original": "reference",
    "lp3500": "anchor",
    "thin": "anchor",
    "noisy": "condition",
    "coarse": "condition",
}
LISTS = 4


@pytest.fixture(scope="module")
def stimuli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example clips, CSV and config (read-only: copy it before changing it)."""
    root = tmp_path_factory.mktemp("own")
    write_example_stimuli(root)
    return root


@pytest.fixture(scope="module")
def package(stimuli_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("own-study") / "pkg"
    build_package(stimuli_dir / "study.toml", None, out)
    return out


def _copy(stimuli_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(stimuli_dir, tmp_path / "in")
    return tmp_path / "in"


def _hidden(candidates: list[str], key: AnswerKey) -> int:
    roles = [key.clips[c].role for c in candidates]
    assert roles.count("reference") == 1, roles
    return roles.index("reference")


def test_mushra_trials_rate_every_condition_of_an_item_against_its_reference(package: Path) -> None:
    manifest, key = load_study(package / "study.json"), load_key(package / "key.json")
    mushra = [t for t in manifest.trials if t.kind == "mushra"]
    assert len(mushra) == len(ITEMS) * LISTS
    for t in mushra:
        k = key.trials[t.id]
        assert (k.trial_type, k.group) == ("mushra", k.item) and k.item in ITEMS
        assert t.phase == "main" and len(t.references) == 1
        assert t.sliders is not None and (t.sliders.min, t.sliders.max) == (0, 100)
        assert t.sliders.labels == ["Bad", "Poor", "Fair", "Good", "Excellent"]
        ref = key.clips[t.references[0]]
        assert (ref.role, ref.condition) == ("reference", "original")
        # The hidden reference, the CSV's anchor, the generated 3.5 kHz anchor, both conditions.
        assert {key.clips[c].condition: key.clips[c].role for c in t.candidates} == CONDITIONS
        assert all(Path(key.clips[c].source).parent.name == "clips" for c in t.candidates)
    # Every list holds every item's MUSHRA trial; each list's has its own candidate order.
    for lst in manifest.lists:
        assert sorted(
            key.trials[t].item or "" for t in lst.trials if key.trials[t].trial_type == "mushra"
        ) == sorted(ITEMS)
    orders = defaultdict(set)
    for t in mushra:
        orders[key.trials[t.id].item].add(tuple(key.clips[c].condition for c in t.candidates))
    assert all(len(o) > 1 for o in orders.values()), orders


def test_hidden_reference_sits_in_every_position_about_equally_often(package: Path) -> None:
    manifest, key = load_study(package / "study.json"), load_key(package / "key.json")
    per_item: dict[str, Counter[int]] = defaultdict(Counter)
    for t in manifest.trials:
        if t.kind == "mushra":
            per_item[key.trials[t.id].item or ""][_hidden(t.candidates, key)] += 1
    study = sum(per_item.values(), Counter())
    counts = [study[p] for p in range(len(CONDITIONS))]
    assert max(counts) - min(counts) <= 1, counts  # 12 trials over 5 positions: 2 or 3 each
    for item, positions in per_item.items():
        assert max(positions.values()) == 1, (item, positions)  # 4 lists, 4 different positions


def test_generated_anchor_is_low_passed_at_3500_hz(package: Path) -> None:
    manifest, key = load_study(package / "study.json"), load_key(package / "key.json")
    t = next(t for t in manifest.trials if t.kind == "mushra")

    def above_4khz_db(condition: str) -> float:
        clip = next(c for c in t.candidates if key.clips[c].condition == condition)
        audio, sr = sf.read(package / manifest.clips[clip].file)
        power = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) ** 2
        freqs = np.fft.rfftfreq(audio.size, 1 / sr)
        return float(10 * np.log10(power[freqs > 4000].sum() / power.sum()))

    assert above_4khz_db("original") > -35  # the reference has treble to lose
    assert above_4khz_db("lp3500") < -60


def test_every_clip_is_at_the_loudness_target(package: Path) -> None:
    manifest, key = load_study(package / "study.json"), load_key(package / "key.json")
    meter = pyloudnorm.Meter(16000)
    measured = 0
    for cid, clip in manifest.clips.items():
        if key.clips[cid].role == "screening":
            continue  # dichotic stimuli keep their calibrated relation
        audio, sr = sf.read(package / clip.file)
        assert sr == 16000
        assert meter.integrated_loudness(audio) == pytest.approx(-23.0, abs=0.5), key.clips[cid]
        measured += 1
    assert measured > 80


def test_no_file_gives_the_hidden_reference_away(package: Path) -> None:
    """No two package files are byte-identical; in a MUSHRA trial the open reference and
    every candidate have one size and one length, and no candidate has the open
    reference's samples (each has its own dither and offset)."""
    manifest = load_study(package / "study.json")
    files = sorted((package / "audio").iterdir())
    digests = Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)
    assert len(files) == len(manifest.clips) and max(digests.values()) == 1
    for t in manifest.trials:
        if t.kind != "mushra":
            continue
        paths = [package / manifest.clips[c].file for c in (*t.references, *t.candidates)]
        assert len({p.stat().st_size for p in paths}) == 1, t.id
        decoded = [sf.read(p, dtype="int16")[0].astype(int) for p in paths]
        assert len({d.size for d in decoded}) == 1, t.id
        for a, b in itertools.combinations(decoded, 2):
            assert np.abs(a - b).max() > 4, t.id


def test_check_passes_and_no_listening_strategy_finds_the_hidden_reference(package: Path) -> None:
    report = check_package(package)
    assert report.ok, report.problems
    mushra = {r.strategy: r for r in report.strategies if r.trial_type == "mushra"}
    assert {
        "the candidate with the open reference's file size",
        "the candidate with the open reference's bytes or samples",
        "the largest candidate file",
        "always option 1",
    } <= set(mushra)
    for r in mushra.values():
        assert r.chance == pytest.approx(1 / len(CONDITIONS))
        assert not r.leak, r
    for name in ("the candidate with the open reference's file size", "the largest candidate file"):
        assert mushra[name].accuracy == pytest.approx(mushra[name].chance)


def test_check_finds_a_file_that_names_or_matches_the_hidden_reference(package: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(package, pkg)
    manifest = load_study(pkg / "study.json")
    t = next(t for t in manifest.trials if t.kind == "mushra")
    reference = pkg / manifest.clips[t.references[0]].file
    reference.write_bytes(reference.read_bytes()[:-100])  # no longer the candidates' size
    renamed = pkg / manifest.clips[t.candidates[0]].file
    renamed.rename(renamed.with_name("noisy.flac"))
    leaks = "\n".join(check_package(pkg).blinding_leaks)
    assert f"trial {t.id}: the clips it compares differ in byte size" in leaks
    assert "public name noisy is the name of a condition or source file ['noisy']" in leaks


def test_slider_trials_rate_each_condition_on_the_configured_scale(package: Path) -> None:
    manifest, key = load_study(package / "study.json"), load_key(package / "key.json")
    by_id = {t.id: t for t in manifest.trials}
    for lst in manifest.lists:
        rated = []
        for tid in lst.trials:
            t, k = by_id[tid], key.trials[tid]
            if t.kind != "slider":
                continue
            assert (k.trial_type, k.group) == ("slider", k.item)
            assert k.n_options is None and k.chance is None  # a scale has no chance level
            assert t.question == "How natural does this clip sound?" and not t.references
            assert t.sliders is not None and t.sliders.labels == ["Not at all", "Extremely"]
            (clip,) = t.candidates
            assert key.clips[clip].role == "condition"
            rated.append((k.item, key.clips[clip].condition))
        # By default every list rates every condition under test of every item once.
        assert sorted(rated) == sorted(itertools.product(ITEMS, ["noisy", "coarse"]))


def test_abx_trials_tell_each_condition_from_its_reference_with_x_on_a_as_often_as_on_b(
    package: Path,
) -> None:
    manifest, key = load_study(package / "study.json"), load_key(package / "key.json")
    by_id = {t.id: t for t in manifest.trials}
    for lst in manifest.lists:
        compared, x_on = [], Counter()
        for tid in lst.trials:
            t, k = by_id[tid], key.trials[tid]
            if t.kind != "abx":
                continue
            assert (k.trial_type, k.group) == ("abx", k.item) and [o.text for o in t.options] == ["A", "B"]
            assert (k.n_options, k.chance) == (2, 0.5)  # the key says what a guess gets right
            a, b = (key.clips[c] for c in t.references)
            (x,) = (key.clips[c] for c in t.candidates)
            assert {a.condition, b.condition} == {"original", k.condition}
            answer = [o.id for o in t.options].index(k.correct_option)
            assert x.source == (a, b)[answer].source  # X is the clip the key names
            compared.append((k.item, k.condition))
            x_on[answer] += 1
        # Every condition under test of every item once (abx.repeats = 1), and X is A in half
        # of the list's trials: always answering "A" is right by chance only.
        assert sorted(compared) == sorted(itertools.product(ITEMS, ["noisy", "coarse"]))
        assert abs(x_on[0] - x_on[1]) <= 1, x_on
    abx = [r for r in check_package(package).strategies if r.trial_type == "abx"]
    assert abx and all(r.chance == 0.5 and not r.leak for r in abx), abx


def test_slider_trials_split_over_lists_with_per_list(stimuli_dir: Path, tmp_path: Path) -> None:
    root = _copy(stimuli_dir, tmp_path)
    config = root / "study.toml"
    config.write_text(
        config.read_text().replace("[slider]\n", '[slider]\nper_list = 3\nconditions = ["noisy", "thin"]\n')
    )
    manifest, key = build_package(config, None, tmp_path / "pkg")
    by_id = {t.id: t for t in manifest.trials}
    seen: Counter[tuple[str | None, str | None]] = Counter()
    for lst in manifest.lists:
        mine = [by_id[t].candidates[0] for t in lst.trials if by_id[t].kind == "slider"]
        assert len(mine) == 3
        pairs = [
            (key.trials[t].item, key.clips[by_id[t].candidates[0]].condition)
            for t in lst.trials
            if by_id[t].kind == "slider"
        ]
        assert len(set(pairs)) == 3  # at most once per list
        seen.update(pairs)
    # 4 lists x 3 = 12 presentations of the 6 (item, condition) pairs: each twice.
    assert set(seen.values()) == {2} and {c for _, c in seen} == {"noisy", "thin"}
    assert check_package(tmp_path / "pkg").ok


def test_run_record_lists_the_csv_and_every_clip(package: Path, stimuli_dir: Path) -> None:
    record = load_run_record(package / "run.json")
    inputs = {Path(i.path).name for i in record.inputs}
    assert {"study.toml", "conditions.csv"} <= inputs
    assert {p.name for p in (stimuli_dir / "clips").iterdir()} <= inputs


def test_same_seed_and_salt_give_the_same_study(stimuli_dir: Path, package: Path, tmp_path: Path) -> None:
    salt = json.loads((package / "run.json").read_text())["config"]["study"]["salt"]
    root = _copy(stimuli_dir, tmp_path)
    config = root / "study.toml"
    config.write_text(config.read_text().replace("seed = 5", f'seed = 5\nsalt = "{salt}"'))
    build_package(config, None, tmp_path / "again")

    def shape(root: Path) -> list[tuple[str, ...]]:
        manifest, key = load_study(root / "study.json"), load_key(root / "key.json")
        return sorted(
            (key.trials[t.id].item or "", *(key.clips[c].condition or "" for c in t.candidates))
            for t in manifest.trials
            if t.kind in ("mushra", "slider")
        )

    assert shape(tmp_path / "again") == shape(package)


def _write_csv(root: Path, rows: list[str]) -> None:
    (root / "conditions.csv").write_text("\n".join(rows) + "\n")


def _rows(stimuli_dir: Path) -> list[str]:
    return (stimuli_dir / "conditions.csv").read_text().splitlines()


@pytest.mark.parametrize(
    ("problem", "where", "expected"),
    [
        ("missing file", "row 3, column file", "an audio file"),
        ("unknown role", "row 2, column role", "one of reference, anchor, condition"),
        ("two references", "rows 2, 3, 4, 5, column role", "exactly one reference for item 'melody'"),
        ("no reference", "rows 2, 3, 4, column role", "exactly one reference for item 'melody'"),
        ("duplicate condition", "row 5, column condition", "(row 3 has it)"),
        ("unreadable audio", "row 4, column file", "readable audio"),
        ("silent audio", "row 4, column file", "silent"),
        ("unknown column", "row 1, column rol", "only the columns item, condition, file, role"),
        ("empty item", "row 7, column item", "a value"),
        ("reserved condition", "row 3, column condition", "anchors the builder makes (lp3500"),
    ],
)
def test_csv_errors_name_the_file_row_and_column(
    stimuli_dir: Path, tmp_path: Path, problem: str, where: str, expected: str
) -> None:
    root = _copy(stimuli_dir, tmp_path)
    rows = _rows(stimuli_dir)
    if problem == "missing file":
        rows[2] = "melody,noisy,clips/nope.flac,condition"
    elif problem == "unknown role":
        rows[1] = "melody,original,clips/melody_original.flac,original"
    elif problem == "two references":
        rows[2] = rows[2].replace(",condition", ",reference")
    elif problem == "no reference":
        del rows[1]
    elif problem == "duplicate condition":
        rows[4] = rows[4].replace("melody,thin", "melody,noisy")
    elif problem == "unreadable audio":
        (root / "clips" / "melody_coarse.flac").write_bytes(b"fLaC not really")
    elif problem == "silent audio":
        sf.write(root / "clips" / "melody_coarse.flac", np.zeros(32000), 16000)
    elif problem == "unknown column":
        rows[0] = "item,condition,file,rol"
    elif problem == "empty item":
        rows[6] = rows[6].replace("chords,", ",", 1)
    elif problem == "reserved condition":
        rows[2] = rows[2].replace("melody,noisy", "melody,lp3500")
    _write_csv(root, rows)
    result = CliRunner().invoke(app, ["build", str(root / "study.toml"), "--out", str(tmp_path / "s")])
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert "conditions.csv" in flat and f"field '{where}'" in flat and expected in flat, flat
    assert not (tmp_path / "s").exists()


def test_clips_of_very_different_lengths_are_warned_about(
    stimuli_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _copy(stimuli_dir, tmp_path)
    audio, sr = sf.read(root / "clips" / "bass_noisy.flac")
    sf.write(root / "clips" / "bass_noisy.flac", np.concatenate([audio, audio]), sr)
    with caplog.at_level(logging.WARNING):
        build_package(root / "study.toml", None, tmp_path / "pkg")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("item 'bass' has clips of 2.00 to 4.00 s" in m for m in warned), warned
    assert any("item 'bass'" in w for w in load_run_record(tmp_path / "pkg" / "run.json").warnings)
    # Its MUSHRA trials cut the long clip to the others' length.
    manifest, key = load_study(tmp_path / "pkg" / "study.json"), load_key(tmp_path / "pkg" / "key.json")
    bass = [t for t in manifest.trials if t.kind == "mushra" and key.trials[t.id].item == "bass"]
    assert bass and all(manifest.clips[c].duration_s <= 2.0 for t in bass for c in t.candidates)


def test_cli_builds_without_a_run_directory(stimuli_dir: Path, tmp_path: Path) -> None:
    config = str(stimuli_dir / "study.toml")
    result = CliRunner().invoke(app, ["build", config, "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "package ok" in result.output and "blinding leaks: 0" in result.output
    assert CliRunner().invoke(app, ["check", str(tmp_path / "s")]).exit_code == 0
    # A run directory with [stimuli], or neither, is refused with what to do instead.
    both = CliRunner().invoke(app, ["build", config, "--bundle", str(tmp_path), "--out", str(tmp_path / "t")])
    assert both.exit_code == 1 and "leave the run directory (--bundle) out" in " ".join(both.output.split())
    plain = tmp_path / "plain.toml"
    plain.write_text('[study]\nid = "x"\ntitle = "X"\n')
    neither = CliRunner().invoke(app, ["build", str(plain), "--out", str(tmp_path / "t")])
    flat = " ".join(neither.output.split())
    assert neither.exit_code == 1 and "--bundle RUN_DIR" in flat and "[stimuli]" in flat


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[label_validation]\nenabled = true\n", "label_validation.enabled"),
        ("[steering]\nmode = 'two_way'\n", "steering.enabled"),
        ("[features]\nlayers = [3]\n", "features"),
        ("[practice]\ntrials = 2\n", "practice.trials"),
        ("[attention]\nrate = 0.2\nkinds = ['instructed']\n", "attention.kinds"),
        ("[mushra]\nenabled = false\n", "mushra.enabled"),
        ("[mushra]\nanchors = ['lp3500', 'lp3500']\n", "mushra.anchors"),
        ("[mushra]\nlabels = ['Bad']\n", "mushra.labels"),
    ],
)
def test_config_of_own_clips_refuses_sections_about_a_run(tmp_path: Path, toml: str, field: str) -> None:
    config = tmp_path / "study.toml"
    config.write_text(f'[study]\nid = "x"\ntitle = "X"\n[stimuli]\nconditions = "c.csv"\n{toml}')
    with pytest.raises(ArtifactError) as info:
        load_config(config)
    assert info.value.field == field, str(info.value)


def test_mushra_without_stimuli_says_what_to_add(tmp_path: Path) -> None:
    config = tmp_path / "study.toml"
    config.write_text('[study]\nid = "x"\ntitle = "X"\n[mushra]\nanchors = ["lp7000"]\n')
    with pytest.raises(ArtifactError, match=r"\[stimuli\] section with conditions") as info:
        load_config(config)
    assert info.value.field == "stimuli.conditions"


def test_identical_pair_catch_trials_use_the_items_references(stimuli_dir: Path, tmp_path: Path) -> None:
    root = _copy(stimuli_dir, tmp_path)
    config = root / "study.toml"
    config.write_text(config.read_text() + "\n[attention]\nrate = 0.2\n")
    manifest, key = build_package(config, None, tmp_path / "pkg")
    checks = [t for t in manifest.trials if key.trials[t.id].trial_type == "attention"]
    assert len(checks) == LISTS * 3  # 20% of 15 main trials (3 MUSHRA, 6 slider, 6 ABX), per list
    assert {key.trials[t.id].check for t in checks} == {"identical_pair"}
    assert {Path(key.clips[c].source).name for t in checks for c in t.candidates} <= {
        f"{item}_original.flac" for item in ITEMS
    }
    assert check_package(tmp_path / "pkg").ok


def test_one_item_rated_on_sliders_too_cannot_be_kept_apart(stimuli_dir: Path, tmp_path: Path) -> None:
    root = _copy(stimuli_dir, tmp_path)
    _write_csv(root, _rows(stimuli_dir)[:5])
    with pytest.raises(ArtifactError, match="list 0 has 5 trials of item 'melody' among 5") as info:
        build_package(root / "study.toml", None, tmp_path / "pkg")
    assert info.value.field == "lists.separate_same_feature"


def test_a_mushra_screen_of_more_than_15_clips_is_refused(stimuli_dir: Path, tmp_path: Path) -> None:
    # A screen the participant could never answer (the app takes play counts for at most
    # 64 clips; 21 were refused by its old limit of 20) nor compare by ear.
    root = _copy(stimuli_dir, tmp_path)
    extra = [f"melody,codec{i},clips/melody_noisy.flac,condition" for i in range(14)]
    _write_csv(root, _rows(stimuli_dir) + extra)
    with pytest.raises(ArtifactError, match="at most 15 clips to rate on one MUSHRA screen") as info:
        build_package(root / "study.toml", None, tmp_path / "pkg")
    assert info.value.field == "stimuli.conditions" and "item 'melody' of conditions.csv has 19" in str(
        info.value
    )


def test_an_items_slider_clips_match_in_size_and_length(package: Path, tmp_path: Path) -> None:
    # Rendered one by one, the noisy version's file was the larger in 12 of 12 pairs: a
    # participant knew each slider clip's condition from its size (review of issue 36).
    manifest, key = load_study(package / "study.json"), load_key(package / "key.json")
    shapes: dict[str, set[tuple[int, float]]] = defaultdict(set)
    for t in manifest.trials:
        if t.kind == "slider":
            clip = manifest.clips[t.candidates[0]]
            shapes[key.trials[t.id].item or ""].add(((package / clip.file).stat().st_size, clip.duration_s))
    assert set(shapes) == ITEMS and all(len(s) == 1 for s in shapes.values()), shapes
    pkg = tmp_path / "pkg"
    shutil.copytree(package, pkg)
    t = next(t for t in manifest.trials if t.kind == "slider")
    clip = pkg / manifest.clips[t.candidates[0]].file
    clip.write_bytes(clip.read_bytes()[:-100])
    leaks = "\n".join(check_package(pkg).blinding_leaks)
    assert f"slider trials of item {key.trials[t.id].item!r}: their clips differ in byte size" in leaks


def test_a_file_listed_twice_and_a_stereo_file_are_warned_about(
    stimuli_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 36: a condition pointing at another row's file, and a stereo file played mono,
    built silently before."""
    root = _copy(stimuli_dir, tmp_path)
    rows = _rows(root)
    rows[3] = rows[3].replace("clips/melody_coarse.flac", "clips/melody_noisy.flac")  # a slip
    _write_csv(root, rows)
    audio, sr = sf.read(root / "clips" / "bass_coarse.flac")
    sf.write(root / "clips" / "bass_coarse.flac", np.stack([audio, 0.5 * audio], axis=1), sr)
    with caplog.at_level(logging.WARNING):
        build_package(root / "study.toml", None, tmp_path / "pkg")
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "rows 3, 4 name the same file melody_noisy.flac" in warned, warned
    assert "row 12 is not mono (2 channels)" in warned, warned
    # A clean CSV warns of neither.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_package(stimuli_dir / "study.toml", None, tmp_path / "clean")
    clean = " ".join(r.getMessage() for r in caplog.records)
    assert "same file" not in clean and "not mono" not in clean


def test_an_anchor_that_would_sound_like_its_reference_is_warned_about(
    stimuli_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 36: a 3.5 kHz low-pass of a clip with nothing above 1 kHz changes nothing audible."""
    root = _copy(stimuli_dir, tmp_path)
    audio, sr = sf.read(root / "clips" / "bass_original.flac")
    t = np.arange(audio.shape[0]) / sr
    low = sum(0.2 / h * np.sin(2 * np.pi * 110 * h * t) for h in range(1, 6))  # all under 600 Hz
    sf.write(root / "clips" / "bass_original.flac", low * np.hanning(t.size) ** 0.1, sr)
    with caplog.at_level(logging.WARNING):
        build_package(root / "study.toml", None, tmp_path / "pkg")
    warned = [r.getMessage() for r in caplog.records if "mushra.anchors" in r.getMessage()]
    assert len(warned) == 1 and "lp3500 of item 'bass'" in warned[0], warned


def test_check_finds_a_list_whose_x_is_mostly_a(package: Path, tmp_path: Path) -> None:
    # A key whose ABX answers were all "A" in one list (as a layout that forgot to take
    # turns would give): check names the list, since always answering A would score.
    pkg = tmp_path / "pkg"
    shutil.copytree(package, pkg)
    manifest = load_study(pkg / "study.json")
    by_id = {t.id: t for t in manifest.trials}
    first = manifest.lists[0]
    raw = json.loads((pkg / "key.json").read_text())
    abx = [tid for tid in first.trials if by_id[tid].kind == "abx"]
    for tid in abx:
        raw["trials"][tid]["correct_option"] = by_id[tid].options[0].id
    (pkg / "key.json").write_text(json.dumps(raw))
    report = check_package(pkg)
    assert not report.ok
    assert f"abx: list {first.id} puts X on B in 0 of its {len(abx)} trials" in "\n".join(report.problems)
