"""Paper-scale speed on a GPU (issue 22.4): the model forward and the SAE step at real shapes.

Prepared for a lent GPU machine (``python benchmarks/bench_gpu.py --device cuda``); on the
2-core CPU machine only ``--quick`` makes sense (small shapes: does the script run).
``--smoke --device cpu`` runs the code paths in seconds without a GPU (the tiny MusicGen
preset instead of musicgen-small, 512 latents, batch 64, 2 steps; the CUDA-only parts, the
synchronisation, peak memory and sparsify's Triton decoder, are skipped on a CPU as in any
CPU run): it runs the code paths; its numbers mean nothing (tests/sae_core/test_bench_gpu.py).

* **forward**: teacher-forced frames/s of the musicgen-small preset (the published shapes,
  random weights: speed does not depend on the values), fp32 and under bf16 autocast,
  capturing the paper's five layers as extraction and online training do.
* **SAE step**: tokens/s of ``sae_core.sae.Trainer.train_batch`` against EleutherAI
  sparsify's ``SparseCoder`` in the loop its trainer runs (the fastest peer; its Triton
  decoder on GPU), on the same batches, at d 1024 x 32,768 latents and d 2048 x 65,536
  latents, k 32, batch 4096, fp32; peak GPU memory of each.

The batches are Gaussian with a planted low-rank structure drawn from a seed no coder
uses for its initialisation. Last line: ``ratio_vs_sparsify_d1024=... ratio_vs_sparsify_d2048=...
forward_fps_bf16=...`` (our tokens/s over sparsify's; frames/s of the bf16 forward).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
DATA_SEED = 4242  # not a seed any coder initialises from (ours: 0, sparsify: torch's default)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else float("nan")


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measure_forward(device: str, preset: str, seconds: float, batch: int, bf16: bool) -> float:
    """Frames/s of teacher-forced forwards capturing the paper layers (codes already encoded).

    ``preset`` ``tiny``: the tiny preset (same classes, ~0.6M parameters), for ``--smoke``."""
    from sae_core.layers import paper_layers
    from sae_core.models import load_model
    from sae_core.models.transformers_musicgen import TransformersMusicGen
    from sae_core.presets.musicgen import t5_word_tokenizer
    from sae_core.presets.real import build_real_musicgen
    from sae_core.presets.tiny import build_tiny_musicgen

    if preset == "tiny":  # loaded as real weights are
        with tempfile.TemporaryDirectory() as tmp:
            model = load_model(str(build_tiny_musicgen(Path(tmp) / "tiny")), device=device)
        assert isinstance(model, TransformersMusicGen)
    else:
        model = TransformersMusicGen(build_real_musicgen(preset).to(device), t5_word_tokenizer(), name=preset)
    layers = paper_layers(model.n_layers)
    frames = int(seconds * model.frame_rate)
    vocab = int(model.model.decoder.config.vocab_size)  # 2048 for every published preset
    gen = torch.Generator().manual_seed(DATA_SEED)
    codes = torch.randint(0, vocab, (batch, model.num_codebooks, frames), generator=gen).to(device)
    autocast = (
        torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        model.residuals(codes, layers)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(3):
            model.residuals(codes, layers)
        _sync(device)
    return 3 * batch * frames / (time.perf_counter() - start)


def _batches(d: int, steps: int, batch: int, device: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(DATA_SEED)
    basis = torch.randn(256, d, generator=gen) / 16
    return [(torch.randn(batch, 256, generator=gen) @ basis).to(device) for _ in range(steps)]


def step_ours(d: int, latents: int, batches: list[torch.Tensor], device: str) -> float:
    from sae_core.sae import InMemoryActivations, SaeConfig, TrainConfig, Trainer

    sample = batches[0]
    trainer = Trainer(
        SaeConfig(d_in=d, num_latents=latents, k=32),
        TrainConfig(batch_size=len(sample), epochs=1.0, holdout_fraction=0.0, log_every=10**9),
        InMemoryActivations(torch.cat(batches).cpu(), holdout_fraction=0.0),
        device=device,
        progress=False,
    )
    trainer.start(sample=sample)
    trainer.train_batch(batches[0])  # warm-up (kernels, allocator)
    _sync(device)
    start = time.perf_counter()
    for x in batches[1:]:
        trainer.train_batch(x)
    _sync(device)
    return (len(batches) - 1) * len(sample) / (time.perf_counter() - start)


def step_sparsify(d: int, latents: int, batches: list[torch.Tensor], device: str) -> float:
    if not device.startswith("cuda"):
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # its Triton kernel needs a GPU
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(d, SparseCoderConfig(num_latents=latents, k=32), device=device, dtype=torch.float32)
    optimizer = torch.optim.Adam(sae.parameters(), lr=2e-4 / (latents / 2**14) ** 0.5, eps=6.25e-10)
    with torch.no_grad():
        sae.b_dec.copy_(batches[0].mean(0))

    def step(x: torch.Tensor) -> None:
        out = sae(x)
        (out.fvu + out.auxk_loss / 32).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        sae.set_decoder_norm_to_unit_norm()

    step(batches[0])
    _sync(device)
    start = time.perf_counter()
    for x in batches[1:]:
        step(x)
    _sync(device)
    return (len(batches) - 1) * len(batches[0]) / (time.perf_counter() - start)


def _timed(name: str, run: Callable[..., float], *args: object) -> tuple[float, float]:
    device = str(args[-1])
    _reset_peak(device)
    speed = run(*args)
    peak = _peak_gb(device)
    print(f"  {name:10s} {speed:12,.0f} tokens/s   peak {peak:6.2f} GB")
    return speed, peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small shapes and few steps (a CPU check)")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="runs the code paths in seconds (tiny MusicGen, tiny SAE shapes; use with --device cpu "
        "where there is no GPU); its numbers mean nothing",
    )
    parser.add_argument("--steps", type=int, default=None, help="SAE steps per measurement (default 20)")
    args = parser.parse_args()
    device = args.device
    steps = args.steps or (2 if args.smoke else 3 if args.quick else 20)
    batch = 64 if args.smoke else 256 if args.quick else 4096
    shapes = (
        [(1024, 512), (2048, 512)]
        if args.smoke
        else [(1024, 2048), (2048, 4096)]
        if args.quick
        else [(1024, 32768), (2048, 65536)]
    )
    print(f"device {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'CPU'})")

    preset = "tiny" if args.smoke else "musicgen-small"
    seconds, clips = (1.0, 1) if args.quick or args.smoke else (10.0, 4)
    fps = {}
    for bf16 in (False, True):
        fps[bf16] = measure_forward(device, preset, seconds, clips, bf16)
        precision = "bf16" if bf16 else "fp32"
        print(f"forward {preset}, paper layers captured, {precision}: {fps[bf16]:,.0f} frames/s")

    try:
        import sparsify  # noqa: F401

        have_peer = True
    except ImportError:
        have_peer = False
        print("sparsify (eai-sparsify) is not installed: its rows are left out (make bench-env)")
    ratios = {}
    for d, latents in shapes:
        print(f"SAE step d {d} x {latents:,} latents, k 32, batch {batch}, fp32, {steps} steps")
        data = _batches(d, steps, batch, device)
        ours, _ = _timed("ours", step_ours, d, latents, data, device)
        if have_peer:
            peer, _ = _timed("sparsify", step_sparsify, d, latents, data, device)
            ratios[d] = f"{ours / peer:.2f}"
        else:
            ratios[d] = "n/a"
    shown = " ".join(f"ratio_vs_sparsify_d{d}={r}" for d, r in ratios.items())
    print(f"{shown} forward_fps_bf16={fps[True]:.0f}")


if __name__ == "__main__":
    main()
