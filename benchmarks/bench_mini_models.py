"""Have the mini models learned music? Measured on held-out tracks of another seed (issue 17).

Codec: every held-out track goes through encode -> 4 codebooks -> decode. The descriptor
analysis (``sae_core.labels.describe_segment``: tempo class, mode, register) of the
reconstruction is compared with that of the original, and an instrument classifier
(MFCC mean/std + logistic regression, fitted on the *training* corpus's originals) is
scored on the held-out originals and on their reconstructions. The multi-resolution STFT
distance (auraloss) of reconstruction to original is printed beside that of the random
tiny preset's codec (the strongest peer we have offline), resampled alike.

MusicGen prompt adherence and CLAP zero-shot need the trained mini MusicGen and CLAP
(issue 17.2/17.3); until they exist the last line prints ``n/a`` for them.

Usage: python benchmarks/bench_mini_models.py --codec models/mini/codec [--tracks 24] [--quick]
Last line: ``codec_concepts=<mean agreement over tempo class, mode, register>
prompt_adherence=<...> clap_zero_shot=<...>``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from sae_core.labels import describe_segment
from sae_core.mini.codec import load_corpus_audio
from sae_core.synth import synth_corpus

CONCEPTS = ("tempo", "mode", "register")


def _mfcc_stats(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    return np.concatenate([m.mean(axis=1), m.std(axis=1)])


@torch.no_grad()
def _reconstruct(codec: object, tracks: list[np.ndarray], bandwidth: float | None) -> list[np.ndarray]:
    out = []
    for y in tracks:
        x = torch.from_numpy(y)[None, None]
        enc = codec.encode(x, bandwidth=bandwidth)  # type: ignore[attr-defined]
        rec = codec.decode(enc.audio_codes, enc.audio_scales).audio_values  # type: ignore[attr-defined]
        out.append(rec[0, 0, : len(y)].numpy().astype(np.float32))
    return out


def _stft_distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    import auraloss

    loss = auraloss.freq.MultiResolutionSTFTLoss()
    pairs = zip(a, b, strict=True)
    return float(
        np.mean(
            [loss(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]).item() for x, y in pairs]
        )
    )


def codec_report(codec_dir: Path, n_tracks: int, seconds: float, work: Path) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import EncodecModel

    from sae_core.models import build_tiny_musicgen

    codec = EncodecModel.from_pretrained(codec_dir).eval()
    sr = int(codec.config.sampling_rate)
    bandwidth = float(codec.config.target_bandwidths[-1])
    # Held out: a corpus of another seed than the codec's training corpus (seed 1) and the
    # demo's (0); the classifier trains on a third.
    held_dir, fit_dir = work / "held-out", work / "classifier-train"
    synth_corpus(held_dir, n_tracks=n_tracks, seconds=seconds, seed=2, sr=sr)
    synth_corpus(fit_dir, n_tracks=max(n_tracks, 48), seconds=seconds, seed=3, sr=sr)
    held, _ = load_corpus_audio(held_dir, sr)
    fit, _ = load_corpus_audio(fit_dir, sr)
    import pandas as pd

    held_meta = pd.read_csv(held_dir / "metadata.csv")
    fit_meta = pd.read_csv(fit_dir / "metadata.csv")

    recon = _reconstruct(codec, held, bandwidth)
    agree = {c: 0 for c in CONCEPTS}
    for y, r in zip(held, recon, strict=True):
        a, b = describe_segment(y, sr), describe_segment(r, sr)
        for c in CONCEPTS:
            agree[c] += a.get(c, "") == b.get(c, "")
    shares = {c: agree[c] / len(held) for c in CONCEPTS}

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(np.stack([_mfcc_stats(y, sr) for y in fit]), fit_meta["instrument"])
    truth = held_meta["instrument"].to_numpy()
    acc_orig = float(np.mean(clf.predict(np.stack([_mfcc_stats(y, sr) for y in held])) == truth))
    acc_rec = float(np.mean(clf.predict(np.stack([_mfcc_stats(y, sr) for y in recon])) == truth))

    # The peer: the random tiny preset's codec (32 kHz), on the same tracks resampled.
    import librosa

    tiny = build_tiny_musicgen(work / "tiny")
    from transformers import MusicgenForConditionalGeneration

    tiny_codec = MusicgenForConditionalGeneration.from_pretrained(tiny).audio_encoder.eval()
    tiny_sr = int(tiny_codec.config.sampling_rate)
    up = [librosa.resample(y, orig_sr=sr, target_sr=tiny_sr) for y in held]
    tiny_rec = [
        librosa.resample(r, orig_sr=tiny_sr, target_sr=sr) for r in _reconstruct(tiny_codec, up, None)
    ]
    ours_d, tiny_d = _stft_distance(recon, held), _stft_distance(tiny_rec, held)

    print(f"codec {codec_dir}: {sr} Hz, {len(codec.quantizer.layers)} codebooks, {bandwidth:g} kbps")
    print(f"held-out tracks: {len(held)} x {seconds:g} s (corpus seed 2)")
    for c in CONCEPTS:
        print(f"  {c:9s} original = reconstruction: {shares[c]:.0%}")
    print(
        f"  instrument classifier: {acc_orig:.0%} on originals, {acc_rec:.0%} on reconstructions "
        f"(keeps {acc_rec / max(acc_orig, 1e-9):.0%})"
    )
    print(f"  multi-resolution STFT distance: {ours_d:.3f} (random tiny preset's codec: {tiny_d:.3f})")
    return float(np.mean(list(shares.values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", type=Path, required=True, help="a save_pretrained EncodecModel directory")
    parser.add_argument("--tracks", type=int, default=24, help="held-out tracks")
    parser.add_argument("--quick", action="store_true", help="8 held-out tracks of 6 s")
    args = parser.parse_args()
    n, seconds = (8, 6.0) if args.quick else (args.tracks, 10.0)
    with tempfile.TemporaryDirectory() as tmp:
        concepts = codec_report(args.codec, n, seconds, Path(tmp))
    print(f"codec_concepts={concepts:.3f} prompt_adherence=n/a clap_zero_shot=n/a")


if __name__ == "__main__":
    main()
