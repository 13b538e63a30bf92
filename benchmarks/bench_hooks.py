"""Cost of our hooks: activation capture and steering, against the same work without them.

On the tiny MusicGen (built and saved here, loaded like real weights), times
(1) a teacher-forced forward over 4 x 10 s of codes, with capture hooks on two layers
vs no hooks, and (2) sampling 2 s of audio tokens with a steering intervention vs
without. Runs are interleaved in a shuffled order and the medians compared, so drifts
in machine load hit both sides alike. Goal: <= 1.05 for each.

``--smoke`` runs the code paths (one 1 s window, 0.2 s of generation, two rounds) in
seconds; its numbers mean nothing. It is what tests/sae_core/test_bench_hooks.py runs.

Usage: python benchmarks/bench_hooks.py [--quick | --smoke]
The last line is ``capture_overhead=<x> steering_overhead=<y>``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median times of ``a`` and ``b``, run in a freshly shuffled order every round.

    A fixed A-then-B order biased the second one by up to 13% on a 2-core machine.
    """
    a()
    b()  # warm-up: allocator, caches
    times: dict[int, list[float]] = {0: [], 1: []}
    order = random.Random(0)
    for _ in range(repeats):
        pair = [(0, a), (1, b)]
        order.shuffle(pair)
        for key, fn in pair:
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer rounds, 1 s of generation")
    size.add_argument(
        "--smoke", action="store_true", help="runs the code paths in seconds; its numbers mean nothing"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sae_core.models import Intervention, load_model
    from sae_core.models.transformers_musicgen import TransformersMusicGen
    from sae_core.presets.tiny import build_tiny_musicgen

    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(str(build_tiny_musicgen(Path(tmp) / "tiny")))
    assert isinstance(model, TransformersMusicGen)  # the tiny preset's adapter
    gen = torch.Generator().manual_seed(0)
    windows, frames = (1, 50) if args.smoke else (4, 500)
    codes = torch.randint(0, 256, (windows, model.num_codebooks, frames), generator=gen)
    ids = model.delayed_input_ids(codes)
    text = model._text_inputs(None, windows)

    def forward() -> None:
        with torch.inference_mode():
            model.model(decoder_input_ids=ids, use_cache=False, **text)

    def forward_captured() -> None:
        with model.hooks(capture=[1, 3]):
            forward()

    repeats = 2 if args.smoke else 5 if args.quick else 21
    plain, captured = interleaved(forward, forward_captured, repeats)
    direction = torch.nn.functional.normalize(torch.randn(model.d_model, generator=gen), dim=0)
    steer = [Intervention(2, 4.0 * direction)]
    seconds = 0.2 if args.smoke else 1.0 if args.quick else 2.0

    def generate() -> None:
        model.generate_codes(["a fast piano melody"], seconds, seed=0)

    def generate_steered() -> None:
        model.generate_codes(["a fast piano melody"], seconds, seed=0, interventions=steer)

    base_gen, steered_gen = interleaved(
        generate, generate_steered, 2 if args.smoke else 5 if args.quick else 25
    )
    # What was timed did the work: the hooks recorded both layers, the intervention moved tokens.
    with model.hooks(capture=[1, 3]) as recorded:
        forward()
    shapes = ", ".join(f"layer {layer} {tuple(recorded.stacked(layer).shape)}" for layer in (1, 3))
    plain_codes = model.generate_codes(["a fast piano melody"], seconds, seed=0)[0]
    steered_codes = model.generate_codes(["a fast piano melody"], seconds, seed=0, interventions=steer)[0]
    changed = float((plain_codes != steered_codes).float().mean())
    print(f"captured {shapes}; steering changed {changed:.0%} of the generated tokens")
    print(
        f"teacher-forced forward of {windows} x {frames} frames: {plain * 1000:.1f} ms plain, "
        f"{captured * 1000:.1f} ms with capture"
    )
    print(f"generation {seconds:g} s: {base_gen * 1000:.0f} ms plain, {steered_gen * 1000:.0f} ms steered")
    print(f"capture_overhead={captured / plain:.3f} steering_overhead={steered_gen / base_gen:.3f}")


if __name__ == "__main__":
    main()
