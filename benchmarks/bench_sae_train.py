"""Train our TopK SAE and its peers on the same activations; print the speed ratio against
the fastest peer, EleutherAI's sparsify, with the quality of each (issue 22.5).

Every coder trains on the same in-memory batches, in the same order, with the same shape
(d_in 1024, 8192 latents, k 32, batch 4096, fp32), learning rate, AuxK and thread count:

* ``ours``: ``sae_core.sae.Trainer``;
* ``sparsify``: ``eai-sparsify``'s ``SparseCoder`` (its fused sparse encoder) in a minimal
  loop doing what its trainer does per step (AuxK on the same dead mask, gradient
  projection, Adam, unit-norm decoder), with our learning-rate schedule (its own warm-up of
  1000 steps would leave 60 steps at almost no learning rate);
* ``sae_lens``: ``TopKTrainingSAE`` through its ``SAETrainer``, as its docs configure TopK
  (dense activations; its sparse mode fails in backward on CPU with torch 2.13);
* ``dictionary_learning``: its ``TopKTrainer`` (``update`` per batch).

Ours and sparsify, the two fastest, run three times interleaved (the machine is shared:
the median counts); the others once. Quality on the same held-out rows: FVU, dead % (never
fire on them) and **recovery**: the mean over the planted atoms of their best cosine with
a decoder row (1 = every atom found; about 0.15 for a random dictionary of this size).

The planted data are drawn from their own seed (``PLANTED_SEED``), and the script asserts
that no planted atom is within cosine 0.5 of any initial decoder row of any coder: an
earlier version drew data and our initialisation from seed 0, so half the atoms *were* our
initial rows, which made ours look twice as good as it is.

Needs the peers next to this project: ``make bench-env`` builds ``.venv-bench``, then
``.venv-bench/bin/python benchmarks/bench_sae_train.py [--quick]``. Last line:
``ratio_vs_sparsify=<our tokens/s over sparsify's> fvu_ours=... fvu_sparsify=...
recovery_ours=... recovery_sparsify=...``.

``--smoke`` runs the code paths in seconds at small shapes (d_in 256, 512 latents, k 16,
batch 256, 3 steps, every peer that is installed, once): it runs the code paths; its
numbers mean nothing. It also runs without the peers (the project's own ``.venv``): ours
alone, the peers' fields ``n/a``. tests/sae_core/test_bench_sae_train.py runs it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch

PLANTED_SEED = 7919  # the data's own seed: no coder initialises from it
SAE_SEED = 0  # the peers' torch seed (ours initialises from its own fixed generator)


def planted_dictionary(atoms: int, d: int, seed: int = PLANTED_SEED) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(atoms, d, generator=g), dim=1)


def planted_activations(
    n: int, d: int, atoms: int, active: int, seed: int = PLANTED_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows built from a hidden sparse dictionary, scaled so that E||x||^2 = d; and the dictionary."""
    dictionary = planted_dictionary(atoms, d, seed)
    g = torch.Generator().manual_seed(seed + 1)
    out = torch.empty(n, d)
    for start in range(0, n, 8192):
        m = min(8192, n - start)
        chosen = torch.multinomial(torch.ones(m, atoms), active, generator=g)
        mags = torch.empty(m, active).exponential_(1.0, generator=g)
        out[start : start + m] = torch.nn.functional.embedding_bag(
            chosen, dictionary, per_sample_weights=mags, mode="sum"
        ) + 0.05 * torch.randn(m, d, generator=g)
    return out * (d / out.pow(2).sum(dim=1).mean()).sqrt(), dictionary


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


def run_ours(
    batches: list[torch.Tensor], holdout: torch.Tensor, cfg: dict[str, float], dictionary: torch.Tensor
) -> dict[str, float]:
    from sae_core.sae import InMemoryActivations, SaeConfig, TrainConfig, Trainer

    d, latents, k, lr = int(cfg["d"]), int(cfg["latents"]), int(cfg["k"]), cfg["lr"]
    data = torch.cat(batches)
    trainer = Trainer(
        SaeConfig(d_in=d, num_latents=latents, k=k),
        TrainConfig(batch_size=len(batches[0]), lr=lr, epochs=1.0, holdout_fraction=0.0, log_every=10**9),
        InMemoryActivations(data, holdout_fraction=0.0),
        progress=False,
    )
    assert_data_is_not_init("ours", trainer.sae.W_dec, dictionary)
    # The shared batches in their order, one train_batch each (fit would shuffle its own).
    trainer.start(sample=data[:16384])
    start = time.perf_counter()
    for x in batches:
        trainer.train_batch(x)
    seconds = time.perf_counter() - start
    sae = trainer.sae

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = sae.encode(x)
        dense = torch.zeros(len(x), latents).scatter(1, code.latent_indices, code.latent_acts)
        return sae.decode(code.latent_acts, code.latent_indices), dense

    fvu, dead = quality(encode_decode, holdout, latents)
    recovery = float(best_cosines(sae.W_dec, dictionary).mean())
    return {"seconds": seconds, "fvu": fvu, "dead": dead, "recovery": recovery}


def run_sparsify(
    batches: list[torch.Tensor], holdout: torch.Tensor, cfg: dict[str, float], dictionary: torch.Tensor
) -> dict[str, float]:
    """sparsify's SparseCoder, one step as its Trainer takes it, on our schedule and dead mask."""
    # Its Triton decoder needs a GPU; on CPU it falls back to embedding_bag, as ours does.
    os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    from sparsify import SparseCoder, SparseCoderConfig

    from sae_core.sae import SaeConfig, TrainConfig
    from sae_core.sae.trainer import Trainer

    d, latents, k = int(cfg["d"]), int(cfg["latents"]), int(cfg["k"])
    torch.manual_seed(SAE_SEED)
    sae = SparseCoder(d, SparseCoderConfig(num_latents=latents, k=k), device="cpu", dtype=torch.float32)
    assert sae.W_dec is not None
    assert_data_is_not_init("sparsify", sae.W_dec, dictionary)
    with torch.no_grad():  # what its Trainer does at step 0: b_dec = the first batch's mean
        sae.b_dec.copy_(batches[0].mean(0))
        sae.set_decoder_norm_to_unit_norm()
    # Our schedule, so that both see the same learning rate at every step.
    schedule = Trainer.__new__(Trainer)
    schedule.cfg = TrainConfig(batch_size=len(batches[0]), lr=cfg["lr"])
    schedule.sae_cfg = SaeConfig(d_in=d, num_latents=latents, k=k)
    schedule.total_steps = len(batches)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg["lr"], eps=6.25e-10)
    window = min(
        schedule.sae_cfg.dead_after_tokens, max(len(batches[0]), len(batches) * len(batches[0]) // 10)
    )
    since_fired = torch.zeros(latents, dtype=torch.long)
    start = time.perf_counter()
    for step, x in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(step)
        out = sae(x, dead_mask=since_fired >= window)
        loss = out.fvu + schedule.sae_cfg.auxk_alpha * out.auxk_loss
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        sae.set_decoder_norm_to_unit_norm()
        with torch.no_grad():
            since_fired += len(x)
            since_fired[out.latent_indices.flatten()] = 0
    seconds = time.perf_counter() - start

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            acts, idx, _ = sae.encode(x)
            dense = torch.zeros(len(x), latents).scatter(1, idx, acts)
            return sae.decode(acts, idx), dense

    fvu, dead = quality(encode_decode, holdout, latents)
    recovery = float(best_cosines(sae.W_dec, dictionary).mean())
    return {"seconds": seconds, "fvu": fvu, "dead": dead, "recovery": recovery}


def run_sae_lens(
    batches: list[torch.Tensor], holdout: torch.Tensor, cfg: dict[str, float], dictionary: torch.Tensor
) -> dict[str, float]:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    d, latents, k = int(cfg["d"]), int(cfg["latents"]), int(cfg["k"])
    torch.manual_seed(SAE_SEED)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=latents, k=k, dtype="float32"))
    assert_data_is_not_init("sae_lens", sae.W_dec, dictionary)
    n = sum(len(b) for b in batches)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=n,
        train_batch_size_samples=len(batches[0]),
        lr=cfg["lr"],
        lr_end=cfg["lr"] / 10,
        lr_warm_up_steps=max(1, len(batches) // 20),
        logger=LoggingConfig(log_to_wandb=False),
    )
    provider: Iterator[torch.Tensor] = iter(batches)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=provider)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        acts = sae.encode(x)
        acts_dense = acts.to_dense() if acts.is_sparse else acts
        return sae.decode(acts), acts_dense

    fvu, dead = quality(encode_decode, holdout, latents)
    recovery = float(best_cosines(sae.W_dec, dictionary).mean())
    return {"seconds": seconds, "fvu": fvu, "dead": dead, "recovery": recovery}


def run_dictionary_learning(
    batches: list[torch.Tensor], holdout: torch.Tensor, cfg: dict[str, float], dictionary: torch.Tensor
) -> dict[str, float]:
    from dictionary_learning.trainers.top_k import TopKTrainer

    d, latents, k = int(cfg["d"]), int(cfg["latents"]), int(cfg["k"])
    trainer = TopKTrainer(
        steps=len(batches),
        activation_dim=d,
        dict_size=latents,
        k=k,
        layer=0,
        lm_name="bench",
        lr=cfg["lr"],
        warmup_steps=max(1, len(batches) // 20),
        seed=SAE_SEED,
        device="cpu",
    )
    assert_data_is_not_init("dictionary_learning", trainer.ae.decoder.weight.T, dictionary)
    start = time.perf_counter()
    for step, x in enumerate(batches):
        trainer.update(step, x)
    seconds = time.perf_counter() - start
    ae = trainer.ae

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            f = ae.encode(x)
            return ae.decode(f), f

    fvu, dead = quality(encode_decode, holdout, latents)
    recovery = float(best_cosines(ae.decoder.weight.T, dictionary).mean())
    return {"seconds": seconds, "fvu": fvu, "dead": dead, "recovery": recovery}


PEERS = {"sparsify": run_sparsify, "sae_lens": run_sae_lens, "dictionary_learning": run_dictionary_learning}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="few steps, one repeat, sparsify only")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="runs the code paths in seconds at small shapes, with whichever peers are installed "
        "(none needed); its numbers mean nothing",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 60, quick 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="interleaved runs of ours and sparsify (3)")
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
    steps = args.steps or (3 if args.smoke else 8 if args.quick else 60)
    repeats = args.repeats or (1 if args.quick or args.smoke else 3)
    if args.smoke:
        cfg = {"d": 256, "latents": 512, "k": 16, "batch": 256, "lr": 2e-4 / (512 / 2**14) ** 0.5}
        atoms, active = 1024, 16
    else:
        cfg = {"d": 1024, "latents": 8192, "k": 32, "batch": 4096, "lr": 2e-4 / (8192 / 2**14) ** 0.5}
        atoms, active = 16384, 32
    batch, d, latents, k = int(cfg["batch"]), int(cfg["d"]), int(cfg["latents"]), int(cfg["k"])
    data, dictionary = planted_activations((steps + 4) * batch, d, atoms=atoms, active=active)
    batches = list(data[: steps * batch].split(batch))
    holdout = data[steps * batch :]
    print(f"{steps} steps x {batch} rows, d_in {d}, {latents} latents, k {k}, fp32, {args.threads} threads")
    runs: dict[str, list[dict[str, float]]] = {"ours": [], **({"sparsify": []} if have_sparsify else {})}
    for _ in range(repeats):
        runs["ours"].append(run_ours(batches, holdout, cfg, dictionary))
        if have_sparsify:
            runs["sparsify"].append(run_sparsify(batches, holdout, cfg, dictionary))
    if not args.quick:
        for name in ("sae_lens", "dictionary_learning"):
            try:
                runs[name] = [PEERS[name](batches, holdout, cfg, dictionary)]
            except (ImportError, RuntimeError, NotImplementedError, TypeError) as exc:
                print(
                    f"{name} failed and is left out: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                )
    tokens = steps * batch
    summary = {}
    for name, rs in runs.items():
        speeds = sorted(tokens / r["seconds"] for r in rs)
        mid = rs[len(rs) // 2]
        summary[name] = {
            "speed": statistics.median(speeds),
            **{k: mid[k] for k in ("fvu", "dead", "recovery")},
        }
        shown = " / ".join(f"{v:,.0f}" for v in (tokens / r["seconds"] for r in rs))
        print(
            f"{name:20s} {summary[name]['speed']:9,.0f} tokens/s ({shown})  fvu {mid['fvu']:.4f}  "
            f"dead {mid['dead']:.2%}  recovery {mid['recovery']:.3f}"
        )
    ours = summary["ours"]
    if "sparsify" in summary:
        peer = summary["sparsify"]
        ratio, fvu_peer = f"{ours['speed'] / peer['speed']:.2f}", f"{peer['fvu']:.4f}"
        recovery_peer = f"{peer['recovery']:.3f}"
    else:
        ratio = fvu_peer = recovery_peer = "n/a"
    print(
        f"ratio_vs_sparsify={ratio} fvu_ours={ours['fvu']:.4f} fvu_sparsify={fvu_peer} "
        f"recovery_ours={ours['recovery']:.3f} recovery_sparsify={recovery_peer}"
    )


if __name__ == "__main__":
    main()
