"""SAE trainers as users get them: ours and its peers, each with its own training loop and
defaults, on the same rows in the same order; which reaches the lower held-out FVU, finds
more of a planted dictionary, and how soon (issue 38).

The shape is the user's (d_in 1024, 8192 latents, k 32, batch 4096, fp32, on planted data;
``--acts DIR`` reads one layer of a ``sae-core extract`` directory instead: the demo's
layer 3 is d_in 128). Every trainer gets the same batches in the same order and is scored
on the same held-out rows (whole tracks for ``--acts``) every ``--eval-every`` steps; the
time to a held-out FVU counts training only. Ours and sparsify take turns, one step each,
so that a load on the machine weighs on both alike (``interleaved``).

* ``ours``: ``sae_core.sae.Trainer`` with ``TrainConfig()`` and ``SaeConfig`` defaults;
* ``sparsify``: ``eai-sparsify``'s ``SparseCoder`` stepped exactly as its ``Trainer``
  steps it, with that trainer's defaults read from its ``TrainConfig`` (optimizer
  ``signum``: SignSGD in schedule-free at a constant 5e-3 / sqrt(latents / 2^14), no AuxK,
  ``b_dec`` at the first batch's mean, unit-norm decoder, the gradient parallel to the
  decoder rows removed), scored with the schedule-free average weights (its ``eval()``, as
  its trainer does before saving). Its trainer hooks a Hugging Face model; the benchmark
  feeds it the rows directly, which is the only difference;
* in the full mode also ``sae_lens`` (``TopKTrainingSAE`` through its ``SAETrainer``, the
  learning rate its runner config defaults to) and ``dictionary_learning``
  (``TopKTrainer`` with its defaults).

Quality: held-out FVU, dead % (never fire on the held-out rows) and, on planted data,
**recovery**: the mean over the planted atoms of their best cosine with a decoder row
(1 = every atom found; about 0.15 for a random dictionary of this size). The planted data
are drawn from their own seed (``PLANTED_SEED``), and no planted atom may lie within
cosine 0.5 of any trainer's initial decoder row (an earlier version drew data and our
initialisation from one seed, and half the atoms *were* our initial rows).

**time_to_fvu_ratio**: the common FVU is the worse of ours and sparsify's final held-out
FVU (one both reach); the ratio is sparsify's training seconds to reach it over ours
(above 1: ours gets there sooner).

Needs the peers next to this project: ``make bench-env`` builds ``.venv-bench``, then
``.venv-bench/bin/python benchmarks/bench_sae_train.py [--quick] [--acts DIR --layer N]``.
Last line: ``time_to_fvu_ratio=<x> recovery_ours=... recovery_sparsify=... fvu_ours=...
fvu_sparsify=...`` (recovery ``n/a`` on real activations).

``--smoke`` runs the code paths in seconds at small shapes (d_in 256, 512 latents, k 16,
batch 256, 6 steps, every peer that is installed): its numbers mean nothing. It also runs
without the peers (the project's own ``.venv``): ours alone, the peers' fields ``n/a``.
tests/sae_core/test_bench_sae_train.py runs it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import torch

PLANTED_SEED = 7919  # the data's own seed: no coder initialises from it
DATA_SEED = 104729  # the order of real rows: no trainer's seed either
SAE_SEED = 0  # the peers' torch seed (ours initialises from its own fixed generator)


def planted_dictionary(atoms: int, d: int, seed: int = PLANTED_SEED) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(atoms, d, generator=g), dim=1)


class PlantedBatches(Sequence[torch.Tensor]):
    """Batches of rows built from a hidden sparse dictionary (``dictionary``), each made
    when it is asked for, from its own generator: batch ``i`` is the same rows whoever asks
    and whenever. The full mode's 1,000 batches of 4,096 x 1,024 rows are 16.8 GB; made
    up front (and copied once more for our trainer's source) they were killed for memory
    on a 24 GB machine.

    Each row sums ``active`` distinct atoms with exponential magnitudes, plus noise,
    scaled so that E||x||^2 = d (the scale read off rows of a stream no batch uses). The
    last batch made is kept: ours and sparsify take turns on each batch (``interleaved``).
    ``seconds``: time spent making batches, for a trainer that times its whole loop."""

    def __init__(self, count: int, batch: int, d: int, atoms: int, active: int, seed: int = PLANTED_SEED):
        self.n, self.batch, self.active, self.seed = count, batch, active, seed
        self.dictionary = planted_dictionary(atoms, d, seed)
        self.scale = 1.0
        calibration = self._rows(8192, stream=0)
        self.scale = float((d / calibration.pow(2).sum(dim=1).mean()).sqrt())
        self._last: tuple[int, torch.Tensor] | None = None
        self.seconds = 0.0

    def _rows(self, n: int, stream: int) -> torch.Tensor:
        # Streams 1, 2, ... are the batches; seeds seed + 1 + stream stay clear of the
        # dictionary's own (seed) and of every coder's.
        g = torch.Generator().manual_seed(self.seed + 1 + stream)
        atoms = len(self.dictionary)
        # ``active`` distinct atoms per row, uniformly: draw with replacement and draw again
        # the rows that repeat an atom (about 3% of rows at 32 of 16,384). multinomial over
        # a row of 16,384 weights took 1.6 s a batch.
        chosen = torch.randint(atoms, (n, self.active), generator=g)
        while True:
            ordered = chosen.sort(dim=1).values
            repeats = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1).nonzero().flatten()
            if not len(repeats):
                break
            chosen[repeats] = torch.randint(atoms, (len(repeats), self.active), generator=g)
        mags = torch.empty(n, self.active).exponential_(1.0, generator=g)
        rows = torch.nn.functional.embedding_bag(chosen, self.dictionary, per_sample_weights=mags, mode="sum")
        return (rows + 0.05 * torch.randn(n, self.dictionary.shape[1], generator=g)) * self.scale

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> torch.Tensor: ...
    @overload
    def __getitem__(self, i: slice) -> list[torch.Tensor]: ...
    def __getitem__(self, i: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        i %= self.n
        if self._last is None or self._last[0] != i:
            start = time.perf_counter()
            self._last = (i, self._rows(self.batch, stream=1 + i))
            self.seconds += time.perf_counter() - start
        return self._last[1]

    def holdout(self, n: int) -> torch.Tensor:
        """``n`` rows of a stream no batch uses."""
        return self._rows(n, stream=1 + self.n)


def best_cosines(rows: torch.Tensor, dictionary: torch.Tensor) -> torch.Tensor:
    """For each planted atom, its largest cosine with any of ``rows`` (chunked)."""
    rows = torch.nn.functional.normalize(rows.detach().float(), dim=1)
    return torch.cat([(chunk @ rows.T).max(dim=1).values for chunk in dictionary.split(2048)])


def assert_data_is_not_init(name: str, init_rows: torch.Tensor, dictionary: torch.Tensor) -> None:
    worst = float(best_cosines(init_rows, dictionary).max())
    assert worst < 0.5, f"{name}: a planted atom is within cosine {worst:.3f} of an initial decoder row"


def quality(
    encode_decode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    holdout: torch.Tensor,
    num_latents: int,
) -> tuple[float, float]:
    """FVU on held-out rows and the fraction of latents that never fire on them."""
    fired = torch.zeros(num_latents, dtype=torch.bool)
    err = 0.0
    with torch.no_grad():
        for x in holdout.split(4096):
            recon, acts_dense = encode_decode(x)
            err += float((recon - x).pow(2).sum())
            fired |= (acts_dense > 0).any(dim=0)
    total = float((holdout - holdout.mean(dim=0)).pow(2).sum())
    return err / total, 1.0 - float(fired.float().mean())


@dataclass
class Run:
    """One trainer's run: training seconds, held-out FVU over training, final quality."""

    curve: list[tuple[float, float]] = field(default_factory=list)  # (training seconds, FVU)
    seconds: float = 0.0
    fvu: float = float("nan")
    dead: float = float("nan")
    recovery: float | None = None

    def seconds_to(self, target: float) -> float:
        """Training seconds until the held-out FVU first reached ``target`` (inf: never)."""
        return next((t for t, fvu in self.curve if fvu <= target + 1e-12), math.inf)


class Scorer:
    """Held-out FVU (and dead %, recovery at the end) of one trainer as it trains."""

    def __init__(
        self, holdout: torch.Tensor, num_latents: int, dictionary: torch.Tensor | None, every: int
    ) -> None:
        self.holdout, self.num_latents, self.dictionary, self.every = holdout, num_latents, dictionary, every

    def score(
        self,
        run: Run,
        step: int,
        total: int,
        encode_decode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        decoder_rows: Callable[[], torch.Tensor],
    ) -> None:
        """After ``step`` (1-based) of ``total``: a point of the curve every ``every`` steps,
        and the final quality after the last."""
        if step % self.every and step != total:
            return
        fvu, dead = quality(encode_decode, self.holdout, self.num_latents)
        run.curve.append((run.seconds, fvu))
        if step == total:
            run.fvu, run.dead = fvu, dead
            if self.dictionary is not None:
                run.recovery = float(best_cosines(decoder_rows(), self.dictionary).mean())


def run_ours(
    batches: Sequence[torch.Tensor], shape: dict[str, int], scorer: Scorer
) -> Generator[None, None, Run]:
    """``sae_core.sae.Trainer`` as ``sae-core train`` runs it: every default, one step per
    batch (``fit`` would shuffle its own batches). Yields after each step (``interleaved``)."""
    from sae_core.sae import InMemoryActivations, SaeConfig, TrainConfig, Trainer

    # The source gives the initialisation's sample (up to 65,536 rows, here the first
    # batches') and nothing else: every step's batch comes from ``batches``; max_tokens
    # keeps the schedule to their number.
    sample = torch.cat([batches[i] for i in range(min(len(batches), -(-65536 // shape["batch"])))])
    trainer = Trainer(
        SaeConfig(d_in=shape["d"], num_latents=shape["latents"], k=shape["k"]),
        TrainConfig(
            batch_size=shape["batch"],
            holdout_fraction=0.0,
            log_every=10**9,
            max_tokens=len(batches) * shape["batch"],
        ),
        InMemoryActivations(sample, holdout_fraction=0.0),
        progress=False,
    )
    if scorer.dictionary is not None:
        assert_data_is_not_init("ours", trainer.sae.W_dec, scorer.dictionary)
    run = Run()
    start = time.perf_counter()
    trainer.start()
    run.seconds += time.perf_counter() - start
    sae = trainer.sae

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = sae.encode(x)
        dense = torch.zeros(len(x), shape["latents"]).scatter(1, code.latent_indices, code.latent_acts)
        return sae.decode(code.latent_acts, code.latent_indices), dense

    for step, x in enumerate(batches, 1):
        start = time.perf_counter()
        trainer.train_batch(x)
        run.seconds += time.perf_counter() - start
        scorer.score(run, step, len(batches), encode_decode, lambda: sae.W_dec)
        yield
    return run


def run_sparsify(
    batches: Sequence[torch.Tensor], shape: dict[str, int], scorer: Scorer
) -> Generator[None, None, Run]:
    """sparsify's ``SparseCoder`` stepped as its ``Trainer`` steps it, with its defaults.
    Yields after each step (``interleaved``)."""
    # Its Triton decoder needs a GPU; on CPU it falls back to embedding_bag, as ours does.
    os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify import TrainConfig as SparsifyTrainConfig
    from sparsify.sign_sgd import SignSGD

    defaults = SparsifyTrainConfig(sae=SparseCoderConfig(num_latents=shape["latents"], k=shape["k"]))
    if defaults.optimizer != "signum" or defaults.loss_fn != "fvu":
        raise RuntimeError(
            f"sparsify's defaults changed (optimizer {defaults.optimizer!r}): update the benchmark"
        )
    torch.manual_seed(defaults.init_seeds[0])
    sae = SparseCoder(shape["d"], defaults.sae, device="cpu", dtype=torch.float32)
    assert sae.W_dec is not None
    if scorer.dictionary is not None:
        assert_data_is_not_init("sparsify", sae.W_dec, scorer.dictionary)
    # trainer.py, case "signum": the lr rule and the wrapper, no schedule.
    lr = defaults.lr or 5e-3 / (sae.num_latents / 2**14) ** 0.5
    optimizer = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95)
    optimizer.train()
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long)
    run = Run()

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            acts, idx, _ = sae.encode(x)
            dense = torch.zeros(len(x), sae.num_latents).scatter(1, idx, acts)
            return sae.decode(acts, idx), dense

    def averaged(step: int) -> None:
        # Its trainer scores and saves the schedule-free average (optimizer.eval()).
        optimizer.eval()
        scorer.score(run, step, len(batches), encode_decode, lambda: sae.W_dec)
        optimizer.train()

    for step, x in enumerate(batches, 1):
        start = time.perf_counter()
        with torch.no_grad():
            if step == 1:  # "initialize the encoder and decoder biases"
                sae.b_dec.copy_(x.mean(0))
            sae.set_decoder_norm_to_unit_norm()
        dead_mask = since_fired > defaults.dead_feature_threshold if defaults.auxk_alpha > 0 else None
        out = sae(x=x, y=x, dead_mask=dead_mask)
        loss = out.fvu + defaults.auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            since_fired += len(x)
            since_fired[out.latent_indices.flatten()] = 0
        run.seconds += time.perf_counter() - start
        if step % scorer.every == 0 or step == len(batches):
            averaged(step)
        yield
    return run


def interleaved(trainers: dict[str, Generator[None, None, Run]]) -> dict[str, Run]:
    """One step of each trainer in turn until all are done, so that whatever else the machine
    does weighs on each alike: run one after the other, the demo's layer 3 read
    time_to_fvu_ratio 1.07 on a loaded machine and 1.55-2.48 on a quiet one, sparsify's
    speed moving 20,000-31,500 tokens/s from run to run (issue 38)."""
    runs: dict[str, Run] = {}
    while len(runs) < len(trainers):
        for name, steps in trainers.items():
            if name in runs:
                continue
            try:
                next(steps)
            except StopIteration as done:
                runs[name] = done.value
    return runs


def run_sae_lens(batches: Sequence[torch.Tensor], shape: dict[str, int], scorer: Scorer) -> Run:
    """SAELens' ``TopKTrainingSAE`` through its ``SAETrainer``, at its runner's default lr."""
    import dataclasses

    from sae_lens.config import LanguageModelSAERunnerConfig, LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    runner: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(LanguageModelSAERunnerConfig)}
    torch.manual_seed(SAE_SEED)
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(d_in=shape["d"], d_sae=shape["latents"], k=shape["k"], dtype="float32")
    )
    if scorer.dictionary is not None:
        assert_data_is_not_init("sae_lens", sae.W_dec, scorer.dictionary)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=len(batches) * shape["batch"],
        train_batch_size_samples=shape["batch"],
        lr=runner["lr"],
        lr_end=runner["lr_end"] if runner["lr_end"] is not None else runner["lr"] / 10,  # its post-init
        lr_warm_up_steps=runner["lr_warm_up_steps"],
        logger=LoggingConfig(log_to_wandb=False),
    )
    run = Run()
    made = getattr(batches, "seconds", 0.0)
    start = time.perf_counter()
    SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(batches)).fit()
    # Its loop pulls the batches: the time spent making planted ones is not its training.
    run.seconds = time.perf_counter() - start - (getattr(batches, "seconds", 0.0) - made)

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            acts = sae.encode(x)
            acts_dense = acts.to_dense() if acts.is_sparse else acts
            return sae.decode(acts), acts_dense

    scorer.score(run, len(batches), len(batches), encode_decode, lambda: sae.W_dec)
    return run


def run_dictionary_learning(batches: Sequence[torch.Tensor], shape: dict[str, int], scorer: Scorer) -> Run:
    """dictionary_learning's ``TopKTrainer`` with its defaults, one ``update`` per batch."""
    import inspect

    from dictionary_learning.trainers.top_k import TopKTrainer

    # Its default warm-up (1000 steps) must be shorter than the run, which it asserts: a
    # user of a shorter run shortens it, here to a twentieth.
    warmup = inspect.signature(TopKTrainer).parameters["warmup_steps"].default
    trainer = TopKTrainer(
        steps=len(batches),
        warmup_steps=warmup if warmup < len(batches) else max(1, len(batches) // 20),
        activation_dim=shape["d"],
        dict_size=shape["latents"],
        k=shape["k"],
        layer=0,
        lm_name="bench",
        seed=SAE_SEED,
        device="cpu",
    )
    if scorer.dictionary is not None:
        assert_data_is_not_init("dictionary_learning", trainer.ae.decoder.weight.T, scorer.dictionary)
    ae = trainer.ae
    run = Run()

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            f = ae.encode(x)
            return ae.decode(f), f

    for step, x in enumerate(batches):
        start = time.perf_counter()
        trainer.update(step, x)
        run.seconds += time.perf_counter() - start
        scorer.score(run, step + 1, len(batches), encode_decode, lambda: ae.decoder.weight.T)
    return run


def real_activations(layer_dir: Path, steps: int, batch: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``steps`` batches of one layer's training rows (whole tracks held out, as ``sae-core
    train`` holds them), cycling in epochs of one fixed order; and the held-out rows."""
    from sae_core.sae import ShardedActivations

    source = ShardedActivations(layer_dir, holdout_fraction=0.1)
    train = torch.cat(list(source.batches(batch_size=1, seed=0, epoch=0, split="train")))
    holdout = torch.cat(list(source.batches(batch_size=4096, seed=0, epoch=0, split="holdout")))
    g = torch.Generator().manual_seed(DATA_SEED)
    rows: list[torch.Tensor] = []
    while sum(len(r) for r in rows) < steps * batch:
        rows.append(train[torch.randperm(len(train), generator=g)])
    return list(torch.cat(rows)[: steps * batch].split(batch)), holdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="ours and sparsify only")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="runs the code paths in seconds at small shapes, with whichever peers are installed "
        "(none needed); its numbers mean nothing",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 200; full 1000)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between held-out scores (10)")
    parser.add_argument("--acts", type=Path, default=None, help="a sae-core extract directory (real rows)")
    parser.add_argument("--layer", type=int, default=3, help="its layer (with --acts)")
    parser.add_argument("--latents", type=int, default=None, help="SAE width (8192; smoke 512)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    try:
        import sparsify  # noqa: F401

        have_sparsify = True
    except ImportError:
        have_sparsify = False
        if not args.smoke:
            print(
                "sparsify (eai-sparsify) is not installed here: 'make bench-env', then .venv-bench/bin/python"
            )
            sys.exit(2)
        print("sparsify (eai-sparsify) is not installed: ours alone (make bench-env for the peers)")
    torch.set_num_threads(args.threads)
    steps = args.steps or (6 if args.smoke else 200 if args.quick else 1000)
    every = args.eval_every or (2 if args.smoke else 10)
    if args.smoke:
        shape = {"d": 256, "latents": 512, "k": 16, "batch": 256}
        atoms, active = 1024, 16
    else:
        shape = {"d": 1024, "latents": 8192, "k": 32, "batch": 4096}
        atoms, active = 16384, 32
    shape["latents"] = args.latents or shape["latents"]
    dictionary: torch.Tensor | None = None
    batches: Sequence[torch.Tensor]
    if args.acts is not None:
        batches, holdout = real_activations(args.acts / f"layer_{args.layer}", steps, shape["batch"])
        shape["d"] = batches[0].shape[1]
        where = f"{args.acts} layer {args.layer}: {len(holdout)} held-out rows of unseen tracks"
    else:
        planted = PlantedBatches(steps, shape["batch"], shape["d"], atoms=atoms, active=active)
        batches, holdout, dictionary = planted, planted.holdout(4 * shape["batch"]), planted.dictionary
        where = f"planted dictionary of {atoms} atoms, {active} active per row"
    print(
        f"{steps} steps x {shape['batch']} rows, d_in {shape['d']}, {shape['latents']} latents, "
        f"k {shape['k']}, fp32, {args.threads} threads; {where}"
    )
    steppers = {"ours": run_ours, **({"sparsify": run_sparsify} if have_sparsify else {})}
    trainers: dict[str, Callable[[Sequence[torch.Tensor], dict[str, int], Scorer], Run]] = {}
    if not args.quick:
        trainers |= {"sae_lens": run_sae_lens, "dictionary_learning": run_dictionary_learning}
    # Ours and sparsify step in turn; the full mode's other peers run after, one by one.
    runs = interleaved({name: stepper(batches, shape, Scorer(holdout, shape["latents"], dictionary, every))
                        for name, stepper in steppers.items()})  # fmt: skip
    for name, train in trainers.items():
        scorer = Scorer(holdout, shape["latents"], dictionary, every)
        try:
            runs[name] = train(batches, shape, scorer)
        except (ImportError, RuntimeError, NotImplementedError, TypeError, ValueError, AssertionError) as exc:
            print(f"{name} failed and is left out: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    tokens = steps * shape["batch"]
    common = max(runs[n].fvu for n in ("ours", "sparsify") if n in runs)
    for name, run in runs.items():
        recovery = "n/a" if run.recovery is None else f"{run.recovery:.3f}"
        print(
            f"{name:20s} {tokens / run.seconds:9,.0f} tokens/s  fvu {run.fvu:.4f}  dead {run.dead:.2%}  "
            f"recovery {recovery}  to fvu {common:.4f}: {run.seconds_to(common):.1f} s"
        )
        print(f"{'':20s} fvu by training second: " + " ".join(f"{t:.1f}s:{f:.3g}" for t, f in run.curve))
    ours = runs["ours"]
    peer = runs.get("sparsify")

    def shown(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    ratio = None if peer is None else peer.seconds_to(common) / ours.seconds_to(common)
    print(
        f"time_to_fvu_ratio={shown(ratio, 2)} recovery_ours={shown(ours.recovery)} "
        f"recovery_sparsify={shown(peer.recovery if peer else None)} fvu_ours={ours.fvu:.4f} "
        f"fvu_sparsify={shown(peer.fvu if peer else None, 4)}"
    )


if __name__ == "__main__":
    main()
