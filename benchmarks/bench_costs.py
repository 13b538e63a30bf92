"""Measure the per-frame costs ``sae-core plan`` derives its times from (issue 22.2c).

* **forward**: teacher-forced frames/s of a published MusicGen architecture
  (``real_presets``, random weights: the cost does not depend on the values) capturing the
  paper's five layers, on 10 s windows, as ``sae-core extract`` runs it;
* **sae**: tokens/s of ``sae_core.sae.Trainer`` at d_in 1024, 8192 latents, k 32, batch 4096.

Both on this machine and device; the result is written to ``sae_core/plan_costs.json``
(``--out`` elsewhere) with the machine's name, so the plan can say where its figures come
from. Run it on the GPU you will use (``--device cuda``) and pass the file with
``sae-core plan --costs``.

Usage: python benchmarks/bench_costs.py [--model musicgen-small] [--device cpu] [--quick]
Last line: ``forward_frames_per_s=... sae_tokens_per_s=... forward_vs_matmul=<the forward's
FLOP rate over this device's dense fp32 matmul rate (the limit it can approach)>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from artifact_schemas import write_text_atomic
from sae_core.models import paper_layers
from sae_core.models.real_presets import build_real_musicgen, t5_word_tokenizer
from sae_core.models.transformers_musicgen import TransformersMusicGen
from sae_core.plan import COSTS, parameter_counts
from sae_core.sae import InMemoryActivations, SaeConfig, TrainConfig, Trainer


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _matmul_gflops(device: str) -> float:
    a = torch.randn(4096, 4096, device=device)
    b = torch.randn(4096, 4096, device=device)
    a @ b
    start = time.perf_counter()
    for _ in range(3):
        a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 3 * 2 * 4096**3 / (time.perf_counter() - start) / 1e9


def measure_forward(model_name: str, device: str, windows: int) -> float:
    model = TransformersMusicGen(build_real_musicgen(model_name).to(device), t5_word_tokenizer(), model_name)
    layers = paper_layers(model.n_layers)
    frames = 500  # 10 s windows
    gen = torch.Generator().manual_seed(11)
    codes = torch.randint(0, 2048, (1, model.num_codebooks, frames), generator=gen).to(device)
    model.residuals(codes, layers)  # warm-up
    start = time.perf_counter()
    for _ in range(windows):
        model.residuals(codes, layers)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return windows * frames / (time.perf_counter() - start)


def measure_sae(device: str, steps: int) -> float:
    gen = torch.Generator().manual_seed(12)
    data = torch.randn((steps + 1) * 4096, 1024, generator=gen)
    trainer = Trainer(
        SaeConfig(d_in=1024, num_latents=8192, k=32),
        TrainConfig(batch_size=4096, epochs=1.0, holdout_fraction=0.0, log_every=10**9),
        InMemoryActivations(data, holdout_fraction=0.0),
        device=device,
        progress=False,
    )
    trainer.start(sample=data[:16384])
    batches = data.split(4096)[:steps]
    start = time.perf_counter()
    for x in batches:
        trainer.train_batch(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * 4096 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="musicgen-small", help="preset whose forward is timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer windows and steps")
    parser.add_argument("--out", type=Path, default=COSTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fps = measure_forward(args.model, args.device, 1 if args.quick else 4)
    tps = measure_sae(args.device, 3 if args.quick else 12)
    gflops = _matmul_gflops(args.device)
    machine = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else f"{_cpu_name()}, {args.threads} threads"
    )
    costs = {
        "machine": machine,
        "measured": date.today().isoformat(),
        "script": "benchmarks/bench_costs.py",
        "forward": {"model": args.model, "frames_per_s": round(fps, 1), "layers_captured": 5},
        "sae": {"d_in": 1024, "latents": 8192, "k": 32, "batch": 4096, "tokens_per_s": round(tps, 1)},
        "matmul_gflops": round(gflops, 1),
    }
    write_text_atomic(args.out, json.dumps(costs, indent=2) + "\n")
    achieved = 2 * parameter_counts(args.model)[0] * fps / 1e9
    print(json.dumps(costs, indent=2))
    print(
        f"forward_frames_per_s={fps:.1f} sae_tokens_per_s={tps:.1f} forward_vs_matmul={achieved / gflops:.2f}"
    )


if __name__ == "__main__":
    main()
