"""Have the mini models learned music? Measured on held-out material of other seeds (issue 32).

Corpora: the models train on seed 1 (``sae-core synth-corpus --seed 1``); here the
held-out tracks are seed 2 and the classifiers below are fitted on seed 3, so nothing
measured was seen in training, and nothing shares a seed with any model's init. Every
reader hears audio loudness-normalised as the study's clips are (-23 LUFS, -1 dBFS peak:
``sae_core.clips.loudness_normalise``), classifiers' training audio included.

Readers: ``sae_core.labels.labelers.describe_segment`` for key (its tonic), mode and tempo class;
an MFCC-statistics + logistic-regression classifier, fitted on seed-3 originals, for
instrument and drums (yes/no; tracks whose drums enter mid-track are left out of the
drums concept everywhere: which 5 s of them has drums is not in the caption).

* **Codec** (``--codec DIR``, any codec ``load_codec`` reads: a fitted spectral codec or a
  saved EnCodec): every held-out track, as it is, goes encode -> codes -> decode. Agreement of the
  original's and the reconstruction's key (tonic), mode and tempo class; instrument
  retention = the instrument classifier's accuracy on reconstructions / on originals.
  ``codec_concepts`` = mean of those four. Beside: the key finder's own accuracy on the
  originals (against the corpus metadata), codebook usage on the held-out tracks, and the
  same numbers for the random tiny preset's EnCodec.
* **MusicGen** (``--musicgen DIR``): generations of 5 s from held-out captions at CFG 3.
  For mode, tempo, instrument and drums: accuracy on the generations, the reader's own
  accuracy on held-out originals cut to 5 s (both halves of each track), and their ratio;
  ``prompt_adherence`` = mean of the four ratios. Beside: a shuffled-caption baseline, the
  random tiny preset measured the same way, and chance. Before generating, **caption use**:
  the teacher-forced cross-entropy on the held-out tracks with their own captions, without
  a caption, and with one concept's words changed (``caption_use``). A concept whose wrong
  words cost the model nothing is one it does not read, which no sampler or guidance scale
  can fix; it costs seconds, where the generations take minutes, so a training change can
  be judged by it first.
* **CLAP** (``--clap DIR``): zero-shot classification of held-out clips from prompts in
  words ("a minor key melody"), and caption-to-clip retrieval R@5; the random tiny CLAP
  is measured the same way. ``clap_zero_shot`` = mean over mode, tempo, instrument.
* **Steering** (``--steering DIR``, the output of ``sae-core steer``: steering.parquet and
  its audio): per steered pair, the mean absolute log-mel difference (dB) between the
  steered clip and its baseline, both levelled (a gain alone is no difference), power more
  than 80 dB under the pair's peak floored; ``steer_db`` = the median over pairs (strength-0
  rows left out). The random-direction controls against the same baselines are printed beside.

Usage: python benchmarks/bench_mini_models.py [--codec DIR] [--musicgen DIR] [--clap DIR]
[--steering DIR] [--quick | --smoke] [--tracks N] [--threads N]
Last line: ``codec_concepts=<x> prompt_adherence=<x> clap_zero_shot=<x> steer_db=<x>``
(``n/a`` for a part not given).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sae_core.clips import log_mel_distance, loudness_normalise
from sae_core.labels.labelers import describe_segment
from sae_core.mini.codec import load_corpus_audio
from sae_core.synth import synth_corpus

SR = 16000  # the corpora's rate; each model resamples to its own
TARGET_LUFS = -23.0  # what the study's clips are normalised to (cut_clip, stimuli_builder)
CONCEPTS = ("mode", "tempo", "instrument", "drums")


@dataclass(frozen=True)
class Sizes:
    held_tracks: int
    """Held-out tracks (seed 2): the codec's material, and the captions MusicGen is prompted with."""
    fit_tracks: int
    """Seed-3 tracks the instrument and drums classifiers are fitted on."""
    track_seconds: float
    gen_seconds: float
    per_caption: int
    """Generations per held-out caption (seeds differ)."""


SIZES = {
    "full": Sizes(held_tracks=96, fit_tracks=192, track_seconds=10.0, gen_seconds=5.0, per_caption=2),
    # 48 held-out tracks, not fewer: which tracks a seed-2 corpus draws moves each agreement
    # by several points (one track is 1/n of it). Issue 32's codec (4 x 1024, PCA 128) read
    # codec_concepts 0.894 on a 24-track corpus, 0.926 on 48 and 0.895 on 96 (the bar is 0.9).
    # The classifiers are fitted on 192 tracks: on 96 the instrument classifier was right about
    # 0.77 of held-out originals, on 192 about 0.92, and a weak reader makes retention a ratio
    # of noises.
    "quick": Sizes(held_tracks=48, fit_tracks=192, track_seconds=10.0, gen_seconds=5.0, per_caption=1),
    # Runs the code paths in well under a minute; its numbers mean nothing.
    "smoke": Sizes(held_tracks=4, fit_tracks=12, track_seconds=3.0, gen_seconds=1.5, per_caption=1),
}


def level(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """``y`` as a clip is served: at -23 LUFS under a -1 dBFS peak (silence stays silent)."""
    y = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return loudness_normalise(y, sr, TARGET_LUFS)[0].astype(np.float32)


def read(y: np.ndarray) -> dict[str, str]:
    """Key tonic, mode and tempo class of (levelled) audio: 'C# minor' -> key 'C#', mode 'minor'."""
    d = describe_segment(y, SR)
    key = d.get("key", "").split()
    return {
        "key": key[0] if key else "",
        "mode": d.get("mode", "").split(" ")[0],
        "tempo": d.get("tempo", "").split(" ")[0],
    }


def mfcc_stats(y: np.ndarray) -> np.ndarray:
    import librosa

    m = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20)
    return np.concatenate([m.mean(axis=1), m.std(axis=1)])


def share(a: Any, b: Any) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.mean(a == b)) if len(a) else math.nan


class Material:
    """Held-out tracks (seed 2) and classifiers fitted on seed-3 originals, all levelled."""

    def __init__(self, work: Path, sizes: Sizes) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.sizes = sizes
        held_dir, fit_dir = work / "held-out", work / "classifier-train"
        synth_corpus(held_dir, n_tracks=sizes.held_tracks, seconds=sizes.track_seconds, seed=2, sr=SR)
        synth_corpus(fit_dir, n_tracks=sizes.fit_tracks, seconds=sizes.track_seconds, seed=3, sr=SR)
        self.held_dir = held_dir
        # The codec encodes the tracks as they are (its corpus was not levelled either);
        # the readers hear them, and everything else, levelled.
        self.raw, self.meta = load_corpus_audio(held_dir, SR)
        self.held = [level(y) for y in self.raw]
        fit, fit_meta = load_corpus_audio(fit_dir, SR)
        x = np.stack([mfcc_stats(level(y)) for y in fit])
        whole = (fit_meta["drums"] != "partial").to_numpy()
        targets = {
            "instrument": (x, fit_meta["instrument"].to_numpy()),
            "drums": (x[whole], fit_meta["drums"].to_numpy()[whole]),  # yes / no
        }
        self.classifiers = {}
        for concept, (features, labels) in targets.items():
            self.classifiers[concept] = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            self.classifiers[concept].fit(features, labels)

    def classify(self, concept: str, audio: list[np.ndarray]) -> np.ndarray:
        if not audio:
            return np.asarray([], dtype=object)
        return np.asarray(self.classifiers[concept].predict(np.stack([mfcc_stats(y) for y in audio])))


# --------------------------------------------------------------------------- codec


def tiny_codec(tiny_dir: Path) -> Any:
    """The random tiny preset's codec: its EnCodec, as the adapter uses it (``EncodecCodec``)."""
    from sae_core.models.transformers_musicgen import TransformersMusicGen

    return TransformersMusicGen.load(str(tiny_dir)).codec


@torch.no_grad()
def reconstruct(codec: Any, tracks: list[np.ndarray]) -> tuple[list[np.ndarray], list[torch.Tensor], float]:
    """Encode -> codes -> decode at the codec's rate, back at SR; the codes; seconds per 10 s clip."""
    import librosa

    rate = int(codec.sample_rate)
    out, codes, spent, audio_s = [], [], 0.0, 0.0
    for y in tracks:
        z = librosa.resample(y, orig_sr=SR, target_sr=rate) if rate != SR else y
        started = time.perf_counter()
        c = codec.encode(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))[None])
        rec = codec.decode(c)[0, : len(z)].float().cpu().numpy()
        spent += time.perf_counter() - started
        audio_s += len(y) / SR
        rec = librosa.resample(rec, orig_sr=rate, target_sr=SR) if rate != SR else rec
        out.append(level(rec[: len(y)]))
        codes.append(c.cpu())
    return out, codes, 10 * spent / max(audio_s, 1e-9)


def codec_numbers(codec: Any, m: Material, originals: list[dict[str, str]]) -> dict[str, Any]:
    recon, codes, per_clip = reconstruct(codec, m.raw)
    readings = [read(r) for r in recon]
    out: dict[str, Any] = {
        f"{c} agreement": share([o[c] for o in originals], [r[c] for r in readings])
        for c in ("key", "mode", "tempo")
    }
    truth = m.meta["instrument"].to_numpy()
    acc_orig = share(m.classify("instrument", m.held), truth)
    acc_rec = share(m.classify("instrument", recon), truth)
    out["instrument retention"] = acc_rec / acc_orig if acc_orig > 0 else math.nan
    whole = (m.meta["drums"] != "partial").to_numpy()
    drums_truth = m.meta["drums"].to_numpy()[whole]
    drums_orig = share(m.classify("drums", [y for y, w in zip(m.held, whole, strict=True) if w]), drums_truth)
    drums_rec = share(m.classify("drums", [y for y, w in zip(recon, whole, strict=True) if w]), drums_truth)
    out["drums retention"] = drums_rec / drums_orig if drums_orig > 0 else math.nan
    out["instrument acc"] = (acc_orig, acc_rec)
    flat = torch.cat([c[0] for c in codes], dim=-1)  # [K, all frames]
    out["usage"] = [len(torch.unique(row)) / codec.codebook_size for row in flat]
    out["seconds"] = per_clip
    out["codec_concepts"] = float(
        np.mean(
            [out[k] for k in ("key agreement", "mode agreement", "tempo agreement", "instrument retention")]
        )
    )
    return out


def describe_codec(codec: Any) -> str:
    kind = getattr(codec, "kind", type(codec).__name__)
    return (
        f"{kind}, {codec.sample_rate} Hz, {codec.frame_rate:g} frames/s, "
        f"{codec.num_codebooks} x {codec.codebook_size}"
    )


def codec_report(codec_dir: Path, m: Material, tiny_dir: Path) -> float:
    from sae_core.models.codec import load_codec

    originals = [read(y) for y in m.held]
    key_truth = [f"{k} {mo}" for k, mo in zip(m.meta["key"], m.meta["mode"], strict=True)]
    key_read = [f"{o['key']} {o['mode']}" for o in originals]
    codec, tiny = load_codec(codec_dir), tiny_codec(tiny_dir)
    ours, peer = codec_numbers(codec, m, originals), codec_numbers(tiny, m, originals)
    print(f"codec {codec_dir} ({describe_codec(codec)})")
    print(f"  random tiny preset's codec: {describe_codec(tiny)}")
    print(
        f"  the key finder on the {len(m.held)} originals vs the metadata: tonic "
        f"{share([o['key'] for o in originals], m.meta['key']):.3f}, mode "
        f"{share([o['mode'] for o in originals], m.meta['mode']):.3f}, key and mode "
        f"{share(key_read, key_truth):.3f}; "
        f"tempo class {share([o['tempo'] for o in originals], m.meta['tempo']):.3f}"
    )
    print(f"  {'original vs reconstruction':28s} {'ours':>7s} {'tiny preset':>12s}")
    for name in (
        "key agreement",
        "mode agreement",
        "tempo agreement",
        "instrument retention",
        "drums retention",
        "codec_concepts",
    ):
        note = " (not in codec_concepts)" if name == "drums retention" else ""
        print(f"  {name:28s} {ours[name]:7.3f} {peer[name]:12.3f}{note}")
    for label, numbers in (("ours", ours), ("tiny preset", peer)):
        acc_orig, acc_rec = numbers["instrument acc"]
        usage = " ".join(f"{u:.0%}" for u in numbers["usage"])
        print(
            f"  {label}: instrument classifier {acc_orig:.3f} on originals, {acc_rec:.3f} on "
            "reconstructions; "
            f"codebook usage on the held-out tracks {usage}; encode + decode {numbers['seconds']:.2f} s "
            "per 10 s clip"
        )
    return float(ours["codec_concepts"])


# --------------------------------------------------------------------------- MusicGen


def cuts(m: Material, seconds: float) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Held-out originals cut into ``seconds``-long pieces (as many as fit), with their tracks' rows."""
    n = round(seconds * SR)
    audio, rows = [], []
    for i, y in enumerate(m.raw):
        for start in range(0, len(y) - n + 1, n):
            audio.append(level(y[start : start + n]))
            rows.append(i)
    return audio, m.meta.iloc[rows].reset_index(drop=True)


def readings(m: Material, audio: list[np.ndarray], truth: pd.DataFrame) -> dict[str, tuple[Any, Any]]:
    """Per concept, (what the reader says, the truth): drums only where the caption decides it."""
    read_all = [read(y) for y in audio]
    whole = (truth["drums"] != "partial").to_numpy()
    return {
        "mode": (np.asarray([r["mode"] for r in read_all]), truth["mode"].to_numpy()),
        "tempo": (np.asarray([r["tempo"] for r in read_all]), truth["tempo"].to_numpy()),
        "instrument": (m.classify("instrument", audio), truth["instrument"].to_numpy()),
        "drums": (
            m.classify("drums", [y for y, w in zip(audio, whole, strict=True) if w]),
            truth["drums"].to_numpy()[whole],
        ),
    }


def shuffled_share(said: np.ndarray, truth: np.ndarray) -> float:
    """Agreement of each generation's reading with the truth of *another* caption, over all pairs.

    The shuffled-caption baseline. Generating again from shuffled captions would measure the
    same thing in expectation (a reading compared with a caption it was not prompted by) with
    twice the generation cost and its own sampling noise; one seeded permutation of the truth
    would add permutation noise of several points at these sizes and count a caption against
    itself now and then. The mean over every ordered pair i != j is that permutation's
    expectation over derangements, exact and without a seed: it is what agreement the
    generations' and captions' marginals give without the one following the other.
    """
    n = len(said)
    if n < 2:
        return math.nan
    values = set(said) | set(truth)
    pairs = sum(int(np.sum(said == v)) * int(np.sum(truth == v)) for v in values)
    return (pairs - int(np.sum(said == truth))) / (n * (n - 1))


def generate(
    model_dir: Path, captions: list[str], seconds: float, per_caption: int, label: str
) -> list[np.ndarray]:
    """Generations at CFG 3, ``per_caption`` seeds for each caption, at SR and levelled."""
    import librosa

    from sae_core.models.transformers_musicgen import TransformersMusicGen

    model = TransformersMusicGen.load(str(model_dir))
    prompts = [c for _ in range(per_caption) for c in captions]
    audio, rms, peaks = [], [], []
    for start in range(0, len(prompts), 8):
        _, wav = model.generate_codes(
            prompts[start : start + 8], seconds=seconds, seed=1000 + start, guidance_scale=3.0
        )
        for w in wav.numpy():
            rms.append(float(np.sqrt(np.mean(np.square(w, dtype=np.float64)))))
            peaks.append(float(np.max(np.abs(w))))
            w = librosa.resample(w, orig_sr=model.sample_rate, target_sr=SR) if model.sample_rate != SR else w
            audio.append(level(w))
    # What the model itself puts out, before levelling (CFG can overshoot: issue 32).
    print(
        f"  {label}: raw generations RMS median {np.median(rms):.3f}, peak median "
        f"{np.median(peaks):.3f}, "
        f"{np.mean(np.asarray(peaks) > 1):.0%} of them peak above full scale"
    )
    return audio


def _swapped(row: pd.Series, concept: str) -> str:
    """The track's caption with ``concept`` set to the next of its values (no draw, no seed)."""
    from sae_core.synth.score import DRUMS, MODES, TEMPI, TrackConcepts
    from sae_core.synth.timbre import INSTRUMENTS

    values = {"mode": tuple(MODES), "tempo": tuple(TEMPI), "instrument": INSTRUMENTS, "drums": DRUMS}[concept]
    fields = {f: row[f] for f in TrackConcepts.__dataclass_fields__}
    fields[concept] = values[(values.index(fields[concept]) + 1) % len(values)]
    return TrackConcepts(**fields).caption()


@torch.no_grad()
def caption_use(model_dir: Path, m: Material) -> dict[str, float]:
    """Teacher-forced cross-entropy (nats per codebook token, as training reports it) on the
    held-out tracks' first ``gen_seconds``: with each track's own caption (``own``), with it
    masked out as training drops it (``none``), and with one concept's words changed to
    another value (``mode``, ...). A model that reads a concept's words pays for wrong ones;
    one that ignores them pays nothing, and no sampler or guidance scale can make its
    generations follow them. Costs seconds: a forward pass per caption variant, no generation.
    """
    from sae_core.models.transformers_musicgen import TransformersMusicGen

    adapter = TransformersMusicGen.load(str(model_dir))
    model, tokenizer = adapter.model, adapter.tokenizer
    pad = int(model.config.decoder.pad_token_id)  # also the start token (the adapter fills with it)
    frames = round(m.sizes.gen_seconds * adapter.frame_rate)
    rows = [r for _, r in m.meta.iterrows()]
    own = [str(r["caption"]) for r in rows]
    # "none" is the own caption under an all-zero mask: training's dropped condition.
    variants = {"own": own, "none": own} | {c: [_swapped(r, c) for r in rows] for c in CONCEPTS}
    totals = dict.fromkeys(variants, 0.0)
    n = round(m.sizes.gen_seconds * SR)
    for start in range(0, len(rows), 8):
        audio = [_resampled(y[:n], adapter.sample_rate) for y in m.raw[start : start + 8]]
        codes = torch.cat([adapter.encode_audio(torch.from_numpy(a).float()[None]) for a in audio])
        ids = adapter.delayed_input_ids(codes[..., :frames])  # the adapter's own teacher forcing
        targets = ids[:, 1:].masked_fill(ids[:, 1:] == pad, -100)
        for name, captions in variants.items():
            tok = tokenizer(captions[start : start + len(audio)], return_tensors="pt", padding=True)
            mask = tok["attention_mask"] * (0 if name == "none" else 1)
            logits = model(input_ids=tok["input_ids"], attention_mask=mask, decoder_input_ids=ids).logits
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), targets, ignore_index=-100
            )
            totals[name] += float(loss) * len(audio)
    return {name: total / len(rows) for name, total in totals.items()}


def _resampled(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    return y if sr == SR else librosa.resample(y, orig_sr=SR, target_sr=sr)


def print_caption_use(ours: dict[str, float], tiny: dict[str, float]) -> None:
    def row(use: dict[str, float]) -> str:
        changed = ", ".join(f"{c} {use[c] - use['own']:+.3f}" for c in CONCEPTS)
        none = use["none"] - use["own"]
        return f"own caption {use['own']:.3f}; no caption {none:+.3f}; one concept changed: {changed}"

    print("  caption use (teacher-forced cross-entropy on the held-out tracks, nats per codebook token):")
    print(f"    ours:        {row(ours)}")
    print(f"    tiny preset: {row(tiny)}")


def musicgen_report(model_dir: Path, m: Material, tiny_dir: Path) -> float:
    s = m.sizes
    captions = [str(c) for c in m.meta["caption"]]
    truth = pd.concat([m.meta] * s.per_caption, ignore_index=True)
    crops, crop_truth = cuts(m, s.gen_seconds)
    on_originals = readings(m, crops, crop_truth)
    reader = {c: share(*v) for c, v in on_originals.items()}
    from sae_core.synth.score import MODES, TEMPI
    from sae_core.synth.timbre import INSTRUMENTS

    chance = {
        "mode": 1 / len(MODES),
        "tempo": 1 / len(TEMPI),
        "instrument": 1 / len(INSTRUMENTS),
        "drums": 0.5,
    }
    print(
        f"MusicGen {model_dir}: {len(truth)} generations of {s.gen_seconds:g} s from {len(captions)} "
        f"held-out captions, CFG 3; the readers' own accuracy on {len(crops)} held-out originals cut to "
        f"{s.gen_seconds:g} s"
    )
    print_caption_use(caption_use(model_dir, m), caption_use(tiny_dir, m))
    ours = readings(m, generate(model_dir, captions, s.gen_seconds, s.per_caption, "ours"), truth)
    tiny = readings(m, generate(tiny_dir, captions, s.gen_seconds, s.per_caption, "tiny preset"), truth)
    print(
        f"  {'concept':10s} {'chance':>6s} {'reader':>7s} {'ours':>6s} {'/reader':>7s} {'shuffled':>8s} "
        f"{'ours-shuf':>9s} {'tiny':>6s} {'/reader':>7s}  (n ours, n originals)"
    )
    ratios = {}
    for c in CONCEPTS:
        acc, shuf, acc_tiny = share(*ours[c]), shuffled_share(*ours[c]), share(*tiny[c])
        ratios[c] = acc / reader[c] if reader[c] > 0 else math.nan
        tiny_ratio = acc_tiny / reader[c] if reader[c] > 0 else math.nan
        print(
            f"  {c:10s} {chance[c]:6.3f} {reader[c]:7.3f} {acc:6.3f} {ratios[c]:7.3f} {shuf:8.3f} "
            f"{acc - shuf:+9.3f} {acc_tiny:6.3f} {tiny_ratio:7.3f}  "
            f"({len(ours[c][1])}, {len(on_originals[c][1])})"
        )
    print(
        "  (drums: captions without mid-track entries only; shuffled: the same generations read against "
        "the other captions' truth, mean over all pairs)"
    )
    measured = [r for r in ratios.values() if np.isfinite(r)]
    if len(measured) < len(ratios):
        print("  a reader got none of the originals right: prompt_adherence is the mean of the others")
    return float(np.mean(measured)) if measured else math.nan


# --------------------------------------------------------------------------- CLAP


def zero_shot(clap_dir: Path, m: Material) -> tuple[dict[str, float], float]:
    from sae_core.clap import ClapScorer

    scorer = ClapScorer.load(str(clap_dir))
    clips = [m.held_dir / p for p in m.meta["path"]]
    out = {}
    for concept, values, prompt in (
        ("mode", ["major", "minor"], "a {} key melody"),
        ("tempo", ["slow", "medium", "fast"], "a {} tempo melody"),
        ("instrument", sorted(set(m.meta["instrument"])), "a {} melody"),
    ):
        sims = scorer.similarity([prompt.format(v) for v in values], clips)  # [values, clips]
        guess = np.asarray(values)[sims.argmax(axis=0)]
        out[concept] = float(np.mean(guess == m.meta[concept].to_numpy()))
    sims = scorer.similarity(list(m.meta["caption"]), clips)
    top5 = np.argsort(-sims, axis=1)[:, :5]
    recall = float(np.mean([i in row for i, row in enumerate(top5)]))
    return out, recall


def clap_report(clap_dir: Path, m: Material, tiny_clap: Path) -> float:
    ours, r5 = zero_shot(clap_dir, m)
    tiny, tiny_r5 = zero_shot(tiny_clap, m)
    print(f"CLAP {clap_dir}: zero-shot on {len(m.meta)} held-out clips")
    for concept in ours:
        print(f"  {concept:10s} {ours[concept]:.3f} (random tiny CLAP: {tiny[concept]:.3f})")
    chance = min(1.0, 5 / len(m.meta))
    print(f"  caption -> clip R@5: {r5:.3f} (random tiny CLAP: {tiny_r5:.3f}; chance {chance:.3f})")
    return float(np.mean(list(ours.values())))


# --------------------------------------------------------------------------- steering


def steer_report(steering_dir: Path) -> float:
    import soundfile as sf

    from artifact_schemas import STEERING, load_table

    table = load_table(steering_dir / "steering.parquet", STEERING)
    # Strength 0 is the bit-identical check of the steer stage, not a steered pair.
    table = table[table["strength"] != 0].reset_index(drop=True)
    if table.empty:
        raise SystemExit(f"{steering_dir}/steering.parquet: no steered pair (strength != 0)")
    audio: dict[str, tuple[np.ndarray, int]] = {}

    def load(rel: str) -> tuple[np.ndarray, int]:
        if rel not in audio:
            y, sr = sf.read(str(steering_dir / rel), dtype="float32", always_2d=True)
            audio[rel] = (y.mean(axis=1), int(sr))
        return audio[rel]

    def distance(rel: str, base: str) -> float:
        (y, sr), (yb, srb) = load(rel), load(base)
        if sr != srb:
            raise SystemExit(f"{steering_dir}: {rel} is at {sr} Hz, its baseline {base} at {srb} Hz")
        return log_mel_distance(y, yb, sr, TARGET_LUFS)

    steered = np.asarray([distance(p, b) for p, b in zip(table["path"], table["baseline_path"], strict=True)])
    with_control = table[table["random_path"].notna()]
    control = np.asarray(
        [
            distance(p, b)
            for p, b in zip(with_control["random_path"], with_control["baseline_path"], strict=True)
        ]
    )
    print(
        f"steering {steering_dir}: {len(table)} steered pairs ({table['feature_id'].nunique()} features, "
        f"layer {', '.join(str(v) for v in sorted(table['layer'].unique()))}, strengths "
        f"{', '.join(f'{v:g}' for v in sorted(table['strength'].unique()))})"
    )
    print("  mean absolute log-mel difference from the baseline (dB), both clips at -23 LUFS:")
    print(
        f"  steered        median {np.median(steered):6.2f}  (min {steered.min():.2f}, "
        f"max {steered.max():.2f})"
    )
    if len(control):
        print(
            f"  random control median {np.median(control):6.2f}  (min {control.min():.2f}, "
            f"max {control.max():.2f}; {len(control)} clips)"
        )
    else:
        print("  random control: none in this run (sae-core steer --no-random-control)")
    for feature, group in table.assign(db=steered).groupby("feature_id"):
        print(f"    feature {feature}: median {group['db'].median():.2f} dB over {len(group)} pairs")
    return float(np.median(steered))


# --------------------------------------------------------------------------- main


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    import warnings

    # librosa warns on every near-silent generation ("empty frequency set"): the reading is
    # still made (and counted wrong); the warnings only bury the table.
    warnings.filterwarnings("ignore", category=UserWarning, module="librosa")
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--codec", type=Path, help="a codec directory (sae-core fit-codec, or an EnCodec)")
    parser.add_argument("--musicgen", type=Path, help="a MusicGen directory (sae-core train-musicgen)")
    parser.add_argument("--clap", type=Path, help="a save_pretrained CLAP directory")
    parser.add_argument("--steering", type=Path, help="the output directory of sae-core steer")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="48 held-out tracks and captions (full: 96, 2 generations each)"
    )
    size.add_argument("--smoke", action="store_true", help="runs the code paths in seconds; meaningless")
    parser.add_argument("--tracks", type=int, default=None, help="held-out tracks (overrides the size)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    sizes = SIZES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.tracks is not None:
        if args.tracks < 2:
            parser.error("--tracks: at least 2")
        sizes = replace(sizes, held_tracks=args.tracks)
    from sae_core.clap import build_tiny_clap
    from sae_core.presets.tiny import build_tiny_musicgen

    results: dict[str, float | None] = dict.fromkeys(
        ("codec_concepts", "prompt_adherence", "clap_zero_shot", "steer_db")
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.codec or args.musicgen or args.clap:
            m = Material(work, sizes)
            print(
                f"held-out: {len(m.held)} tracks x {sizes.track_seconds:g} s (corpus seed 2); classifiers "
                f"fitted on {sizes.fit_tracks} tracks of seed 3; readers hear audio at {TARGET_LUFS:g} LUFS"
            )
            tiny = build_tiny_musicgen(work / "tiny-musicgen")
            if args.codec:
                results["codec_concepts"] = codec_report(args.codec, m, tiny)
            if args.musicgen:
                results["prompt_adherence"] = musicgen_report(args.musicgen, m, tiny)
            if args.clap:
                results["clap_zero_shot"] = clap_report(args.clap, m, build_tiny_clap(work / "tiny-clap"))
        if args.steering:
            results["steer_db"] = steer_report(args.steering)
    print(" ".join(f"{k}={fmt(v)}" for k, v in results.items()))


if __name__ == "__main__":
    main()
