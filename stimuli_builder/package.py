"""Write a study package: blinded audio, ``study.json``, ``key.json``, ``checksums.txt``.

The package is built in a temporary sibling directory and renamed into place at
the end, so an interrupted or failed build never leaves a half-written package.

The seed fixes everything a study measures: which clips, which trials, their lists,
options, answers and the audio itself. The ids of trials, options, lists and clips are
not derived from it: each build draws them with ``secrets`` (issue 31), so no id can be
decoded back into the seed, a trial's feature or its list (they were hashes of those:
every id of a list hashed ``steering|3:237|list1`` and the like, and the seed 7 fell
out of a screening trial's id by trying small numbers). Two builds of one config and
seed are therefore the same study under other names; key.json maps the names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artifact_schemas import (
    AnswerKey,
    Clip,
    ClipKey,
    CompletionCodes,
    Option,
    OrderRules,
    RatingScale,
    Screening,
    ScreeningExample,
    StudyManifest,
    Texts,
    Trial,
    TrialKey,
    TrialList,
    manifest_sha256,
    recorded_run,
    save_key,
    save_study,
    write_text_atomic,
)
from stimuli_builder import generated
from stimuli_builder.attention import transform
from stimuli_builder.audio_prep import COMPARED_FORMAT, AudioSpec, PreparedClip, finish, level, read_source
from stimuli_builder.config import StudyConfig
from stimuli_builder.i18n import translator
from stimuli_builder.layout import ClipSource, Design, TrialSpec, seeded_rng

CHECKSUMS = "checksums.txt"
# The most a comparison trial's clips are shifted (cut at the start) so that the same
# source's samples never line up between trials; 50 ms is a fraction of a beat.
CANDIDATE_SHIFT_S = 0.05
# The least gap between the starts of two clips of one source in a trial (render_candidates).
SAME_SOURCE_APART_S = 0.01
# A MUSHRA trial's clips (open reference included) are shifted by at most this: a listener
# switches between them while they play, and 50 ms would be heard as a jump.
MATCHED_SHIFT_S = 0.005
AUDIO_MTIME = 946684800  # 2000-01-01T00:00:00Z


class _Ids:
    """Opaque ids drawn with ``secrets``, unique within a package (issue 31)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def new(self, prefix: str, nbytes: int) -> str:
        while True:
            digits = secrets.token_hex(nbytes)
            # All digits after "l" would read as a layer id to ``check`` (and to a reader).
            if digits.isdigit():
                continue
            new = prefix + digits
            if new not in self.taken:
                self.taken.add(new)
                return new


@dataclass
class _Rendered:
    clip_id: str
    clip: Clip
    key: ClipKey
    data: bytes


class _Renderer:
    """Prepares each distinct source once and names clips by content and use."""

    def __init__(self, design: Design, spec: AudioSpec, seed: int, ids: _Ids) -> None:
        self.design = design
        self.spec = spec
        self.seed = seed
        self.ids = ids
        self._levelled: dict[tuple[str, bool, str], np.ndarray] = {}
        self._prepared: dict[tuple[str, bool, str, str, str], PreparedClip] = {}
        self._id_of: dict[tuple[str, str], str] = {}  # (content sha256, use) -> clip id
        self._starts: dict[tuple[str, str], set[int]] = {}  # (source, transform) -> starts used
        self.clips: dict[str, _Rendered] = {}

    def _level(self, src: ClipSource) -> np.ndarray:
        cache = (src.source, src.normalise, src.transform)
        if cache not in self._levelled:
            if src.source.startswith("generated:"):
                audio = self.design.generated[src.source]
            else:
                audio = read_source(src.source, self.spec.sample_rate)
            try:
                audio = _transform(audio, src.transform, self.spec.sample_rate)
            except ValueError as exc:
                raise ValueError(f"{src.source}: {exc}") from exc
            self._levelled[cache] = level(audio, self.spec, normalise=src.normalise, source=src.source)
        return self._levelled[cache]

    def render(self, src: ClipSource, audio_format: str | None = None) -> str:
        """A clip that may recur (a feature's example): rendered once per use, one id per
        content and use.

        A clip with a ``use`` (an example as one list plays it) gets, like a compared clip,
        a dither and a start (0 to ``CANDIDATE_SHIFT_S``, one length for all) of its own,
        so that neither its id, its bytes nor its decoded samples match another use's:
        ids alone would leave the sha256 in study.json and the samples to link them.
        """
        cache = (src.source, src.normalise, src.transform, src.use, audio_format or "")
        spec = self.spec if audio_format is None else dataclasses.replace(self.spec, format=audio_format)
        if cache not in self._prepared:
            audio = self._level(src)
            if src.use:
                shift = min(int(CANDIDATE_SHIFT_S * self.spec.sample_rate), audio.shape[0] // 4)
                rng = seeded_rng(self.seed, "render", src.source, src.transform, src.use)
                start = int(rng.integers(shift + 1))
                # Never another use's start: that would leave only the dither between them.
                taken = self._starts.setdefault((src.source, src.transform), set())
                while start in taken and len(taken) <= shift:
                    start = (start + 1) % (shift + 1)
                taken.add(start)
                self._prepared[cache] = finish(
                    audio[start : start + audio.shape[0] - shift], spec, dither=rng
                )
            else:
                self._prepared[cache] = finish(audio, spec)
        return self._add(src, self._prepared[cache], audio_format)

    def render_candidates(
        self, srcs: list[ClipSource], trial_key: str, max_shift_s: float = CANDIDATE_SHIFT_S
    ) -> list[str]:
        """The clips a trial asks to compare, indistinguishable but by ear (issue 16.3).

        All get the shortest one's length and each its own dither, so no candidate's bytes
        recur anywhere. They are written as 16-bit PCM WAV whatever ``audio.format``, so that
        they have one byte size by construction and nothing in a file depends on how well its
        audio compresses: FLAC clips padded to one size (the earlier design) still told the
        steered clip apart in 12 of 12 demo steering trials by the padding block's size or
        the stream header's frame sizes, and an identical pair from a different one by the
        same fields (issue 34, an independent attack).
        Each clip also starts at an offset of its own (0 to ``CANDIDATE_SHIFT_S``): dither
        alone left a shared baseline's decoded samples within 2 steps of each other from
        trial to trial, which picked it out in 8 of the demo's 12 steering trials, and the
        "same" pair of an identical-pair check had the same samples twice (issue 34.5);
        shifted, no decoded sample sequence repeats across clips. Two clips of one source
        (a MUSHRA trial's open and hidden reference, an identical pair) never share an offset.
        """
        if not srcs:
            return []
        audios = [self._level(s) for s in srcs]
        shift = int(max_shift_s * self.spec.sample_rate)
        n = min(a.shape[0] for a in audios)
        shift = min(shift, n // 4)
        starts = [
            int(x) for x in seeded_rng(self.seed, trial_key, "start").integers(shift + 1, size=len(audios))
        ]
        # Two clips of one source start at least this far apart: one sample apart, smooth
        # audio's samples nearly lined up (a "same" pair differed by at most 0.005 where its
        # music peaked at 0.1: sample-by-sample comparison told it, a luck-dependent CI failure).
        apart = max(1, min(int(SAME_SOURCE_APART_S * self.spec.sample_rate), (shift + 1) // len(audios)))
        for i, src in enumerate(srcs):
            taken = [
                starts[j]
                for j in range(i)
                if (srcs[j].source, srcs[j].transform) == (src.source, src.transform)
            ]
            for _ in range(shift + 1):
                if all(abs(starts[i] - t) >= apart for t in taken):
                    break
                starts[i] = (starts[i] + 1) % (shift + 1)
        n -= shift
        spec = dataclasses.replace(self.spec, format=COMPARED_FORMAT)
        prepared = [
            finish(a[start : start + n], spec, dither=seeded_rng(self.seed, trial_key, i))
            for i, (a, start) in enumerate(zip(audios, starts, strict=True))
        ]
        if len({len(p.data) for p in prepared}) != 1:  # PCM of one length: cannot happen
            raise RuntimeError(f"{trial_key}: compared clips of unequal byte sizes")
        return [self._add(s, p, COMPARED_FORMAT) for s, p in zip(srcs, prepared, strict=True)]

    def _add(self, src: ClipSource, prepared: PreparedClip, audio_format: str | None = None) -> str:
        content = hashlib.sha256(prepared.data).hexdigest()
        # One id per content and use (comparison clips get their own per trial), drawn at
        # random: never reused by another build, so immutable caching stays safe, and not a
        # hash of content and use, which anyone holding the file could test guesses against
        # (the use named the trial, e.g. "attention|identical_pair|list0|0|a").
        if (content, src.use) not in self._id_of:
            self._id_of[(content, src.use)] = self.ids.new("c", 8)
        clip_id = self._id_of[(content, src.use)]
        if clip_id not in self.clips:
            layer, feature_id = (int(x) for x in src.feature.split(":")) if src.feature else (None, None)
            self.clips[clip_id] = _Rendered(
                clip_id,
                Clip(
                    file=f"audio/{clip_id}.{audio_format or self.spec.format}",
                    sha256=content,
                    duration_s=prepared.duration_s,
                ),
                ClipKey(
                    role=src.role,
                    source=src.source,
                    feature_id=feature_id,
                    layer=layer,
                    condition=src.condition,
                ),
                prepared.data,
            )
        return clip_id


def _transform(audio: np.ndarray, name: str, sample_rate: int) -> np.ndarray:
    """A ClipSource's transform: a MUSHRA anchor's low-pass, or an attention check's."""
    cutoff = generated.lowpass_cutoff(name)
    if cutoff is not None:
        return generated.lowpass(audio, cutoff, sample_rate)
    return transform(audio, name, sample_rate)


def _render_match_groups(design: Design, renderer: _Renderer) -> dict[str, list[str]]:
    """The candidates of each match group's trials, rendered together (TrialSpec.match_group):
    trial key -> its candidates' clip ids."""
    groups: dict[str, list[str]] = {}
    for key in sorted(design.trials):
        if design.trials[key].match_group:
            groups.setdefault(design.trials[key].match_group, []).append(key)
    matched: dict[str, list[str]] = {}
    for group, keys in sorted(groups.items()):
        rendered = iter(
            renderer.render_candidates(
                [c for k in keys for c in design.trials[k].candidates], f"match|{group}"
            )
        )
        for k in keys:
            matched[k] = [next(rendered) for _ in design.trials[k].candidates]
    return matched


def _trial(
    spec: TrialSpec,
    ids: _Ids,
    renderer: _Renderer,
    rendered: list[str] | None,
    _: Callable[[str], str],
) -> tuple[Trial, TrialKey]:
    """``spec`` as a trial and its key; ``rendered``: its candidates, when its match group
    rendered them. ``_`` translates the texts participants read into the study's language
    (the builder's defaults; the researcher's own texts pass through)."""
    tid = ids.new("t", 6)
    if rendered is not None:
        refs, cands = [renderer.render(c) for c in spec.references], rendered
    elif spec.matched_reference:
        both = renderer.render_candidates([*spec.references, *spec.candidates], spec.key, MATCHED_SHIFT_S)
        refs, cands = both[: len(spec.references)], both[len(spec.references) :]
    else:
        # Every clip a scored trial plays is PCM, as compared clips are: compressed, a file's
        # size and frame sizes fingerprint its audio. A headphone check's tone was in the
        # sound whose FLAC frames were largest (6 of 6 demo items), and participants pooling
        # their lists matched a feature's examples across lists by file size and read a
        # choice's answer off another list's rating (0.57-0.70, chance 0.25; issue 34).
        # Only the practice trials keep ``audio.format``.
        audio_format = None if spec.phase == "practice" else COMPARED_FORMAT
        refs = [renderer.render(c, audio_format) for c in spec.references]
        cands = renderer.render_candidates(spec.candidates, spec.key)
    options = [Option(id=ids.new("o", 5), text=_(text)) for text in spec.options]

    def scale(s: RatingScale | None) -> RatingScale | None:
        return s and s.model_copy(update={"min_label": _(s.min_label), "max_label": _(s.max_label)})

    trial = Trial(
        id=tid,
        kind=spec.kind,
        phase=spec.phase,
        question=_(spec.question),
        references=refs,
        candidates=cands,
        options=options,
        rating=scale(spec.rating),
        confidence=scale(spec.confidence),
        sliders=spec.sliders
        and spec.sliders.model_copy(update={"labels": list(map(_, spec.sliders.labels))}),
        feedback=spec.feedback,
        segments=spec.segments,
    )
    key = TrialKey(
        correct_option=options[spec.correct_option].id if spec.correct_option is not None else None,
        correct_clip=cands[spec.correct_candidate] if spec.correct_candidate is not None else None,
        n_options=len(options) or None,
        chance=1 / len(options) if options else None,
        **spec.meta,
    )
    return trial, key


def write_package(
    design: Design,
    config: StudyConfig,
    texts: dict[str, str],
    out: str | Path,
    *,
    config_path: Path,
    inputs: Sequence[Path],
    parents: Sequence[dict[str, Any]] = (),
    force: bool = False,
) -> tuple[StudyManifest, AnswerKey]:
    """Render ``design`` into the package directory ``out``.

    ``inputs`` (files or directories) are checksummed into run.json with the config; the
    run records in their directories, and ``parents``, become the record's parents.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    seed = config.study.design_seed
    a = config.audio
    ids = _Ids()
    renderer = _Renderer(
        design, AudioSpec(a.sample_rate, a.format, a.loudness_lufs, a.true_peak_dbtp, a.fade_ms), seed, ids
    )
    trials: list[Trial] = []
    keys: dict[str, TrialKey] = {}
    catalog, shown_as = translator(config.study.language), config.label_validation.shown_as

    def translate(text: str) -> str:
        return shown_as.get(text) or catalog(text)

    matched = _render_match_groups(design, renderer)
    for spec_key in sorted(design.trials):
        trial, trial_key = _trial(design.trials[spec_key], ids, renderer, matched.get(spec_key), translate)
        trials.append(trial)
        keys[trial.id] = trial_key
    trial_id = {k: t.id for k, t in zip(sorted(design.trials), trials, strict=True)}
    calibration = renderer.render(design.calibration)
    example = None
    if design.screening_example is not None:
        source, target = design.screening_example
        example = ScreeningExample(
            clip=renderer.render(source, COMPARED_FORMAT), target=target, segments=generated.interval_spans()
        )
    # study.json lists trials, and each list its main trials, in an order drawn per build
    # (like the ids): in the design's order (sorted keys, "label_choice|3:43|list0", ...) a
    # pooled study.json told which trials of the lists were one feature's, and so which
    # answer another list's rating named (issue 34). Practice keeps its order.
    shuffler = secrets.SystemRandom()
    shuffler.shuffle(trials)
    lists = []
    for keys_ in design.lists:
        main = [trial_id[k] for k in keys_ if design.trials[k].phase == "main"]
        shuffler.shuffle(main)
        lists.append(
            TrialList(
                id=ids.new("l", 4),
                trials=[trial_id[k] for k in keys_ if design.trials[k].phase != "main"] + main,
                target_participants=config.lists.target_participants,
            )
        )
    sc = config.screening
    manifest = StudyManifest(
        study_id=config.study.id,
        title=config.study.title,
        texts=Texts(**texts),
        clips={cid: r.clip for cid, r in sorted(renderer.clips.items())},
        trials=trials,
        lists=lists,
        order=OrderRules(separate_groups=config.lists.separate_same_feature),
        screening=None
        if design.screening_kind is None
        else Screening(
            kind=design.screening_kind,
            pass_threshold=sc.pass_threshold,
            max_attempts=sc.max_attempts,
            example=example,
        ),
        calibration_clip=calibration,
        questionnaire=config.questionnaire.fields,
        require_prolific_id=config.study.require_prolific_id,
        trial_comments=config.study.trial_comments,
        language=config.study.language,
    )
    codes = config.codes
    key = AnswerKey(
        study_id=config.study.id,
        manifest_sha256=manifest_sha256(manifest),
        # Only codes the researcher chose: the package is reproducible from its seed, and
        # a code derived from the seed could be computed by anyone who learns it (issue 16).
        # ``study-app import`` draws the missing ones with ``secrets`` and keeps them in
        # the database.
        codes=CompletionCodes(
            complete=codes.complete, screened_out=codes.screened_out, declined=codes.declined
        ),
        trials=keys,
        clips={cid: r.key for cid, r in sorted(renderer.clips.items())},
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its 0700 survived the rename, and nginx (www-data) answered 403
    # for every clip until someone ran chmod (issue 31.6). mkdir gives what the umask allows.
    tmp = out.parent / f".{out.name}.{secrets.token_hex(6)}"
    tmp.mkdir()
    try:
        with recorded_run(
            tmp,
            "stimuli-build",
            config=config.model_dump(mode="json"),
            seeds={"study": config.study.seed},  # the salt is in the config recorded beside it
            inputs=[config_path, *inputs],
        ) as record:
            record.warnings = list(design.warnings)
            record.parents += parents
            (tmp / "audio").mkdir()
            for r in renderer.clips.values():
                (tmp / r.clip.file).write_bytes(r.data)
                # One modification time for every clip: nginx's Last-Modified (and a default
                # ETag of mtime-size) then says nothing about the order clips were written in.
                os.utime(tmp / r.clip.file, (AUDIO_MTIME, AUDIO_MTIME))
            save_study(manifest, tmp / "study.json")
            # key.json gets the umask's mode like every other file, not 0600: ``study-app
            # import`` reads it as the service user (docs/deploy.md builds as the researcher,
            # imports as ``study``), and compose mounts the package into another container.
            # nginx never serves it: /_audio/ is internal and the app sends it only to
            # <study>/<a clip's file>. On a shared build host, a umask of 027 keeps it
            # (with config.toml, which may hold the same completion codes) from others.
            save_key(key, tmp / "key.json")
            shutil.copyfile(config_path, tmp / "config.toml")
            write_checksums(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest, key


def package_files(root: Path) -> list[Path]:
    """Files covered by ``checksums.txt`` (all but run.json and the checksum file itself)."""
    skip = {CHECKSUMS, "run.json"}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in skip)


def write_checksums(root: Path) -> None:
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}"
        for p in package_files(root)
    ]
    write_text_atomic(root / CHECKSUMS, "\n".join(lines) + "\n")
