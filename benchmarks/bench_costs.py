"""Measure the per-frame costs ``sae-core plan`` derives its times from (issue 22.2c).

* **forward**: teacher-forced frames/s of a published MusicGen architecture
  (``sae_core.presets.real``, random weights: the cost does not depend on the values) capturing the
  paper's five layers, on 10 s windows, as ``sae-core extract`` runs it;
* **sae**: tokens/s of ``sae_core.sae.Trainer`` at d_in 1024, 8192 latents, k 32, batch 4096.

Both on this machine and device; the result is written to ``sae_core/plan_costs.json``
(``--out`` elsewhere) with the machine's name, so the plan can say where its figures come
from. Run it on the GPU you will use (``--device cuda``) and pass the file with
``sae-core plan --costs``.

``--smoke`` runs the code paths in seconds on the tiny MusicGen preset (the real one takes
longer to build than the smoke may run; its rate is scaled by decoder parameters to
``--model`` in the file, as the plan scales), a small SAE and a small matmul, and writes its
file to a temporary directory unless ``--out`` is given: it runs the code paths; its
numbers mean nothing (tests/sae_core/test_bench_costs.py runs it).

Usage: python benchmarks/bench_costs.py [--model musicgen-small] [--device cpu] [--quick | --smoke]
Last line: ``forward_frames_per_s=... sae_tokens_per_s=... forward_vs_matmul=<the forward's
FLOP rate over this device's dense fp32 matmul rate (the limit it can approach)>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from artifact_schemas import write_text_atomic
from sae_core.layers import paper_layers
from sae_core.models.transformers_musicgen import TransformersMusicGen
from sae_core.plan import COSTS, parameter_counts
from sae_core.presets.musicgen import t5_word_tokenizer
from sae_core.presets.real import build_real_musicgen
from sae_core.sae import InMemoryActivations, SaeConfig, TrainConfig, Trainer


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _matmul_gflops(device: str, n: int = 4096) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    start = time.perf_counter()
    for _ in range(3):
        a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 3 * 2 * n**3 / (time.perf_counter() - start) / 1e9


def _smoke_musicgen(device: str, tmp: Path) -> tuple[TransformersMusicGen, int]:
    """The tiny preset (same classes as the published ones, ~0.6M parameters), loaded as real
    weights are, and its decoder size."""
    from sae_core.models import load_model
    from sae_core.presets.tiny import build_tiny_musicgen

    model = load_model(str(build_tiny_musicgen(tmp / "tiny")), device=device)
    assert isinstance(model, TransformersMusicGen)
    return model, sum(p.numel() for p in model.model.decoder.parameters())


def measure_forward(
    model_name: str, device: str, windows: int, frames: int = 500, model: TransformersMusicGen | None = None
) -> float:
    if model is None:
        model = TransformersMusicGen(
            build_real_musicgen(model_name).to(device), t5_word_tokenizer(), model_name
        )
    layers = paper_layers(model.n_layers)
    # frames: 500 = 10 s windows
    vocab = int(model.model.decoder.config.vocab_size)
    gen = torch.Generator().manual_seed(11)
    codes = torch.randint(0, vocab, (1, model.num_codebooks, frames), generator=gen).to(device)
    model.residuals(codes, layers)  # warm-up
    start = time.perf_counter()
    for _ in range(windows):
        model.residuals(codes, layers)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return windows * frames / (time.perf_counter() - start)


SAE_SHAPE = {"d_in": 1024, "latents": 8192, "k": 32, "batch": 4096}
SMOKE_SAE_SHAPE = {"d_in": 64, "latents": 256, "k": 8, "batch": 256}


def measure_sae(device: str, steps: int, shape: dict[str, int] = SAE_SHAPE) -> float:
    d, latents, k, batch = shape["d_in"], shape["latents"], shape["k"], shape["batch"]
    gen = torch.Generator().manual_seed(12)
    data = torch.randn((steps + 1) * batch, d, generator=gen)
    trainer = Trainer(
        SaeConfig(d_in=d, num_latents=latents, k=k),
        TrainConfig(batch_size=batch, epochs=1.0, holdout_fraction=0.0, log_every=10**9),
        InMemoryActivations(data, holdout_fraction=0.0),
        device=device,
        progress=False,
    )
    trainer.start(sample=data[:16384])
    batches = data.split(batch)[:steps]
    start = time.perf_counter()
    for x in batches:
        trainer.train_batch(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="musicgen-small", help="preset whose forward is timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer windows and steps")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="runs the code paths in seconds (tiny MusicGen, small SAE, written to a temporary "
        "directory unless --out); its numbers mean nothing",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"where the costs go (default {COSTS})")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or (Path(tmp) / "plan_costs.json" if args.smoke else COSTS)
        run(args, out, Path(tmp))


def run(args: argparse.Namespace, out: Path, tmp: Path) -> None:
    captured = 5  # the paper's five layers of a published preset
    if args.smoke:
        model, decoder_params = _smoke_musicgen(args.device, tmp)
        captured = len(paper_layers(model.n_layers))
        fps = measure_forward("tiny", args.device, 1, frames=50, model=model)
        shape = SMOKE_SAE_SHAPE
        tps = measure_sae(args.device, 2, shape)
        gflops = _matmul_gflops(args.device, 256)
    else:
        fps = measure_forward(args.model, args.device, 1 if args.quick else 4)
        shape = SAE_SHAPE
        tps = measure_sae(args.device, 3 if args.quick else 12)
        gflops = _matmul_gflops(args.device)
        decoder_params = parameter_counts(args.model)[0]
    machine = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else f"{_cpu_name()}, {args.threads} threads"
    )
    # The plan scales a forward by the decoder parameters of a published preset, so the
    # smoke's file names args.model with the tiny preset's rate scaled the same way.
    recorded_fps = fps * decoder_params / parameter_counts(args.model)[0] if args.smoke else fps
    costs = {
        "machine": machine,
        "measured": date.today().isoformat(),
        "script": "benchmarks/bench_costs.py",
        "forward": {
            "model": args.model,
            "frames_per_s": round(recorded_fps, 1),
            "layers_captured": captured,
        },
        "sae": {**shape, "tokens_per_s": round(tps, 1)},
        "matmul_gflops": round(gflops, 1),
    }
    if args.smoke:
        costs["smoke"] = (
            f"runs the code paths; its numbers mean nothing (forward measured on the tiny preset at "
            f"{fps:.1f} frames/s, scaled by decoder parameters)"
        )
    write_text_atomic(out, json.dumps(costs, indent=2) + "\n")
    achieved = 2 * decoder_params * fps / 1e9
    print(json.dumps(costs, indent=2))
    print(f"written to {out}")
    print(
        f"forward_frames_per_s={fps:.1f} sae_tokens_per_s={tps:.1f} forward_vs_matmul={achieved / gflops:.2f}"
    )


if __name__ == "__main__":
    main()
