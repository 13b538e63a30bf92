"""Validate a built study package: files, checksums, durations, balance, blinding, order rules."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from artifact_schemas import AnswerKey, ArtifactError, StudyManifest, load_key, load_study
from artifact_schemas.order import attention_fits, groups_separable, list_items, session_order
from artifact_schemas.study import STIMULUS_ROLES
from stimuli_builder.no_listening import StrategyResult, no_listening_strategies
from stimuli_builder.package import CHECKSUMS, package_files
from stimuli_builder.trial_types import OWN_TYPES

# Words that would tell a participant (or a curious one reading the page source)
# something the key holds. Option texts are labels and may say anything, so
# they are checked against the key's own metadata rather than this list.
LEAK_WORDS = (
    "steer",
    "baseline",
    "random",
    "control",
    "feature",
    "layer",
    "target",
    "foil",
    "correct",
    "labeler",
)
# Types whose lists hold a feature's (an item's) trial at most once, each in as many lists.
_COUNTED_TYPES = ("label_choice", "label_rating", "steering", *(t.NAME for t in OWN_TYPES if t.ONCE_PER_LIST))


@dataclass
class ListSummary:
    list_id: str
    counts: dict[str, int]
    features: int
    attention: int


@dataclass
class CheckReport:
    study_id: str
    problems: list[str] = field(default_factory=list)
    lists: list[ListSummary] = field(default_factory=list)
    # kind -> (max - min) presentations of a feature across lists
    balance_spread: dict[str, int] = field(default_factory=dict)
    # feature -> fraction of its two-way steering presentations with the steered clip first
    steered_first: dict[str, float] = field(default_factory=dict)
    # feature -> its steering presentations, and the number of candidates per trial
    steering_presentations: dict[str, int] = field(default_factory=dict)
    steering_candidates: int = 0
    blinding_leaks: list[str] = field(default_factory=list)
    # Every no-listening strategy on every trial type (stimuli_builder.no_listening).
    strategies: list[StrategyResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_package(root: str | Path) -> CheckReport:
    root = Path(root)
    manifest = load_study(root / "study.json")
    key = load_key(root / "key.json", manifest)
    report = CheckReport(manifest.study_id)
    _check_files(root, manifest, report)
    _check_balance(manifest, key, report)
    _check_order(manifest, key, report)
    report.strategies = no_listening_strategies(root, manifest, key)
    report.blinding_leaks = blinding_leaks(root, manifest, key) + [
        f"no-listening strategy '{r.strategy}' scores {r.accuracy:.3f} on {r.trial_type} trials "
        f"(chance {r.chance:.3f}, leak above {r.threshold:.3f})"
        for r in report.strategies
        if r.leak
    ]
    report.problems += [f"blinding: {leak}" for leak in report.blinding_leaks]
    return report


def _check_files(root: Path, manifest: StudyManifest, report: CheckReport) -> None:
    listed: dict[str, str] = {}
    try:
        for n, line in enumerate((root / CHECKSUMS).read_text().splitlines(), 1):
            digest, _, rel = line.partition("  ")
            if not re.fullmatch(r"[0-9a-f]{64}", digest) or not rel:
                raise ArtifactError(root / CHECKSUMS, f"line {n}", "'<sha256>  <path>'", line)
            listed[rel] = digest
    except OSError:
        report.problems.append(f"{root / CHECKSUMS}: missing")
    actual = {p.relative_to(root).as_posix() for p in package_files(root)}
    for rel in sorted(actual - set(listed)):
        report.problems.append(f"{rel}: not in {CHECKSUMS}")
    for rel, digest in sorted(listed.items()):
        path = root / rel
        if not path.is_file():
            report.problems.append(f"{rel}: listed in {CHECKSUMS} but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            report.problems.append(f"{rel}: checksum differs from {CHECKSUMS}")
    for cid, clip in manifest.clips.items():
        path = root / clip.file
        if not path.is_file():
            report.problems.append(f"clip {cid}: file {clip.file} missing")
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != clip.sha256:
            report.problems.append(f"clip {cid}: {clip.file} does not match its sha256 in study.json")
        duration = sf.info(str(path)).duration
        if abs(duration - clip.duration_s) > max(0.05, 0.01 * clip.duration_s):
            report.problems.append(
                f"clip {cid}: lasts {duration:.2f} s, study.json says {clip.duration_s:.2f} s"
            )


def _check_balance(manifest: StudyManifest, key: AnswerKey, report: CheckReport) -> None:
    per_type: dict[str, Counter[str]] = defaultdict(Counter)
    all_groups: dict[str, set[str]] = defaultdict(set)
    for tk in key.trials.values():
        if tk.trial_type in _COUNTED_TYPES and tk.group is not None:
            all_groups[tk.trial_type].add(tk.group)
    for lst in manifest.lists:
        counts: Counter[str] = Counter()
        in_list: dict[str, Counter[str]] = defaultdict(Counter)
        for tid in lst.trials:
            k = key.trials[tid]
            if k.trial_type in ("screening", "practice") or k.trial_type is None:
                continue
            counts[k.trial_type] += 1
            if k.trial_type in _COUNTED_TYPES and k.group is not None:
                per_type[k.trial_type][k.group] += 1
                in_list[k.trial_type][k.group] += 1
        for ttype, in_type in sorted(in_list.items()):
            twice = sorted(g for g, n in in_type.items() if n > 1)
            if twice:
                report.problems.append(f"list {lst.id}: features {twice} appear more than once as {ttype}")
        features = {g for in_type in in_list.values() for g in in_type}
        report.lists.append(ListSummary(lst.id, dict(counts), len(features), counts.get("attention", 0)))
    for ttype, groups in sorted(all_groups.items()):
        values = [per_type[ttype].get(g, 0) for g in groups]
        spread = max(values) - min(values)
        report.balance_spread[ttype] = spread
        if spread > 1:
            report.problems.append(
                f"balance: {ttype} presentations per feature differ by {spread} across lists"
            )
    _check_candidate_positions(manifest, key, report)
    for trial_type in OWN_TYPES:
        found = trial_type.check(manifest, key)
        report.problems += found.problems
        report.balance_spread.update(found.balance_spread)


def _check_candidate_positions(manifest: StudyManifest, key: AnswerKey, report: CheckReport) -> None:
    n_lists_with = Counter(t for lst in manifest.lists for t in lst.trials)
    positions: dict[str, Counter[tuple[str, int]]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for t in manifest.trials:
        k = key.trials[t.id]
        if k.trial_type != "steering" or k.group is None:
            continue
        weight = n_lists_with[t.id]
        totals[k.group] += weight
        for pos, cid in enumerate(t.candidates):
            positions[k.group][(key.clips[cid].role, pos)] += weight
    for group, n in sorted(totals.items()):
        n_cands = 1 + max(p for _, p in positions[group])
        expected = n / n_cands
        for role in sorted({r for r, _ in positions[group]}):
            for pos in range(n_cands):
                count = positions[group][(role, pos)]
                if abs(count - expected) > 1:
                    report.problems.append(
                        f"steering: feature {group} has its {role} clip in position {pos + 1} "
                        f"{count} of {n} times (expected {expected:.1f} +- 1)"
                    )
        report.steered_first[group] = positions[group][("steered", 0)] / n
        report.steering_presentations[group] = n
        report.steering_candidates = n_cands


def _check_order(manifest: StudyManifest, key: AnswerKey, report: CheckReport) -> None:
    phases = {t.id: t.phase for t in manifest.trials}
    groups = {tid: k.group for tid, k in key.trials.items()}
    attention = {tid for tid, k in key.trials.items() if k.trial_type == "attention"}
    for lst in manifest.lists:
        main = [t for t in lst.trials if phases[t] == "main"]
        regular = [t for t in main if t not in attention]
        n_att = len(main) - len(regular)
        if not attention_fits(len(regular), n_att):
            report.problems.append(f"list {lst.id}: {n_att} attention trials cannot be spread")
        if manifest.order.separate_groups and not groups_separable([groups[t] for t in regular]):
            report.problems.append(f"list {lst.id}: trials of one feature cannot all be separated")
        items = list_items(lst.trials, manifest, key)
        for seed in range(20):  # the server's shuffle must honour the rules for any seed
            order = [t for t in session_order(items, manifest.order, seed) if phases[t] == "main"]
            att = [i for i, t in enumerate(order) if t in attention]
            if att and (att[0] == 0 or any(b - a == 1 for a, b in itertools.pairwise(att))):
                report.problems.append(
                    f"list {lst.id}: session seed {seed} puts attention trials first/adjacent"
                )
                break
            if manifest.order.separate_groups:
                pairs = itertools.pairwise(order)
                if any(groups[a] is not None and groups[a] == groups[b] for a, b in pairs):
                    report.problems.append(
                        f"list {lst.id}: session seed {seed} puts one feature twice in a row"
                    )
                    break


def blinding_leaks(root: Path, manifest: StudyManifest, key: AnswerKey) -> list[str]:
    """Places where ``study.json`` or an audio file name gives away what ``key.json`` holds."""
    leaks: list[str] = []
    secret_words = set(LEAK_WORDS)
    for tk in key.trials.values():
        if tk.labeler:
            secret_words.add(tk.labeler.casefold())
    # A researcher's own files and conditions may have short names ("a", "ref", "64k"): those
    # are looked for as whole names among the public ids and file names, not inside prose.
    own = any(ck.role in STIMULUS_ROLES for ck in key.clips.values())
    own_words = {ck.condition.casefold() for ck in key.clips.values() if ck.condition}
    for ck in key.clips.values():
        if ck.source and not ck.source.startswith("generated:"):
            (own_words if own else secret_words).add(Path(ck.source).stem.casefold())
    id_pattern = re.compile(r"\b(f|l|layer|feat|feature)_?\d+\b", re.IGNORECASE)

    public: dict[str, Any] = json.loads((root / "study.json").read_text())
    public.pop("texts", None)  # the researcher's own consent/instructions prose
    public.pop("questionnaire", None)
    for where, text in _strings(public):
        if where.endswith(".text") and ".options[" in where:
            continue  # label texts: the labels are what is being asked about
        low = text.casefold()
        for word in sorted(secret_words):
            if word and word in low:
                leaks.append(f"study.json {where} contains {word!r}")
        if id_pattern.search(text):
            leaks.append(f"study.json {where} looks like a feature/layer id: {text!r}")
    for path in sorted((root / "audio").iterdir()) if (root / "audio").is_dir() else []:
        low = path.name.casefold()
        hits = [w for w in sorted(secret_words) if w and w in low]
        if hits or id_pattern.search(path.stem):
            leaks.append(f"audio file name {path.name} reveals {hits or 'an id'}")
    # A correct option that always sits in one place is a leak too.
    positions = Counter(
        [o.id for o in t.options].index(key.trials[t.id].correct_option)  # type: ignore[arg-type]
        for t in manifest.trials
        if key.trials[t.id].trial_type in ("label_choice", "steering") and key.trials[t.id].correct_option
    )
    total = sum(positions.values())
    if total >= 6 and max(positions.values()) / total > 0.75:
        leaks.append(
            f"the correct option sits in one position in {max(positions.values())} of {total} trials"
        )
    leaks += _own_name_leaks(root, manifest, own_words)
    leaks += _byte_leaks(root, manifest) + _slider_leaks(root, manifest, key) + _design_leaks(manifest, key)
    return leaks + _attention_leaks(manifest, key)


def _slider_leaks(root: Path, manifest: StudyManifest, key: AnswerKey) -> list[str]:
    """A slider trial rates one clip, so nothing on its screen to compare it with: but a
    participant sees every slider trial of an item, and a condition whose files are larger
    or longer than the others' (a noisier version compresses worse; a codec adds delay)
    would be known by that. All of an item's slider clips must match in size and length."""
    by_item: dict[str, list[str]] = defaultdict(list)
    for t in manifest.trials:
        item = key.trials[t.id].item
        if t.kind == "slider" and item is not None:
            by_item[item] += t.candidates
    leaks: list[str] = []
    for item, clips in sorted(by_item.items()):
        leaks += _shape_leaks(root, manifest, clips, f"slider trials of item {item!r}: their clips")
    return leaks


def _shape_leaks(root: Path, manifest: StudyManifest, clips: list[str], what: str) -> list[str]:
    """``clips`` a participant can set side by side must match in byte size and duration."""
    leaks = []
    sizes = sorted({f.stat().st_size for c in clips if (f := root / manifest.clips[c].file).is_file()})
    if len(sizes) > 1:
        leaks.append(f"{what} differ in byte size {sizes}")
    durations = sorted({manifest.clips[c].duration_s for c in clips})
    if len(durations) > 1:
        leaks.append(f"{what} differ in duration {durations}")
    return leaks


def _own_name_leaks(root: Path, manifest: StudyManifest, words: set[str]) -> list[str]:
    """Public ids or audio file names that are (or hold, between separators) the name of a
    condition or of a source file: ``audio/codec_64k.flac`` would say what a clip is."""
    names = {*manifest.clips, *(t.id for t in manifest.trials), *(lst.id for lst in manifest.lists)}
    names |= {o.id for t in manifest.trials for o in t.options}
    names |= {Path(c.file).stem for c in manifest.clips.values()}
    if (root / "audio").is_dir():
        names |= {p.stem for p in (root / "audio").iterdir()}
    leaks = []
    for name in sorted(names):
        low = name.casefold()
        parts = set(re.split(r"[^0-9a-z]+", low)) | {low}
        hits = sorted(w for w in words if w and w in parts)
        if hits:
            leaks.append(f"public name {name} is the name of a condition or source file {hits}")
    return leaks


def _byte_leaks(root: Path, manifest: StudyManifest) -> list[str]:
    """What a participant could learn from the files alone, without listening (issue 16.3):
    the clips a trial compares must match in byte size and duration, and no compared clip's
    bytes may recur anywhere else (the shared baseline of a list gave itself away so)."""
    leaks: list[str] = []
    uses: dict[str, set[str]] = {}
    for t in manifest.trials:
        for c in (*t.references, *t.candidates):
            uses.setdefault(manifest.clips[c].sha256, set()).add(t.id)
    for t in manifest.trials:
        # A MUSHRA trial compares its candidates with the open reference too, an ABX trial
        # its X with A and B.
        compared = [*t.references, *t.candidates] if t.kind in ("mushra", "abx") else t.candidates
        if len(compared) < 2:
            continue
        leaks += _shape_leaks(root, manifest, compared, f"trial {t.id}: the clips it compares")
        for c in t.candidates:
            digest = manifest.clips[c].sha256
            others = uses[digest] - {t.id}
            if others or sum(manifest.clips[x].sha256 == digest for x in t.candidates) > 1:
                leaks.append(f"trial {t.id}: clip {c} has the same bytes as a clip elsewhere")
    return leaks


def _design_leaks(manifest: StudyManifest, key: AnswerKey) -> list[str]:
    """A list that rates feature f's label L with f's clips and also asks f's label choice
    with answer L hands the participant that answer."""
    leaks = []
    for lst in manifest.lists:
        answers = {
            key.trials[t].group: key.trials[t].label
            for t in lst.trials
            if key.trials[t].trial_type == "label_choice" and key.trials[t].group
        }
        for t in lst.trials:
            k = key.trials[t]
            if k.trial_type == "label_rating" and k.group in answers and answers[k.group] == k.label:
                leaks.append(
                    f"list {lst.id}: rating {k.label!r} for feature {k.group} gives away its label choice"
                )
    return leaks


def _attention_leaks(manifest: StudyManifest, key: AnswerKey) -> list[str]:
    """Catch trials a participant passes without listening (issue 31.5): an answer printed
    in the question, or one answer (by text or by position) for every check of a kind."""
    leaks = []
    by_kind: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for t in manifest.trials:
        k = key.trials[t.id]
        if k.trial_type != "attention" or k.correct_option is None:
            continue
        ids = [o.id for o in t.options]
        if k.correct_option not in ids:
            continue  # a key naming no option of its trial: not a leak (the app scores it wrong)
        answer = t.options[ids.index(k.correct_option)].text
        if answer.casefold() in t.question.casefold():
            leaks.append(f"attention trial {t.id}: its question contains its answer {answer!r}")
        by_kind[k.check or "attention"].append((answer, ids.index(k.correct_option)))
    for kind, answers in sorted(by_kind.items()):
        if len(answers) < 2:
            continue
        texts = {a for a, _ in answers}
        positions = {p for _, p in answers}
        if len(texts) == 1:
            leaks.append(f"attention checks ({kind}): all {len(answers)} have the answer {texts.pop()!r}")
        elif len(positions) == 1:
            where = positions.pop() + 1
            leaks.append(f"attention checks ({kind}): all {len(answers)} have the answer in position {where}")
    return leaks


def _strings(obj: Any, where: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, str):
        return [(where, obj)]
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            if where == "clips":  # clip ids are keys here; field names are the schema's own
                out.append((f"clips.{k}", str(k)))
            out += _strings(v, f"{where}.{k}" if where else str(k))
        return out
    if isinstance(obj, list):
        return [s for i, v in enumerate(obj) for s in _strings(v, f"{where}[{i}]")]
    return []
