"""Train our TopK SAE and SAELens's TopK SAE on the same activations; print the speed ratio.

Both train on the same in-memory batches, in the same order, with the same shape
(d_in 1024, 8192 latents, k 32, batch 4096, fp32), learning rate and thread count.
The peer runs through its own trainer (``sae_lens.training.sae_trainer.SAETrainer``
with ``TopKTrainingSAE``), once with dense and once with sparse activations; the faster
of the two is the peer's time (a mode that fails to train is reported and left out:
with torch 2.13 on CPU its sparse mode fails in backward, "aten::view" on SparseCPU).
Quality is judged on the same held-out rows for both:
FVU, and dead % = latents that never fire on them.

Needs sae-lens next to this project: ``make bench-env`` builds ``.venv-bench`` with it,
then ``.venv-bench/bin/python benchmarks/bench_sae_train.py [--quick]``.
The last line is ``ratio_vs_sae_lens=<ours/peer throughput> ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

import torch


def planted_activations(n: int, d: int, atoms: int, active: int, seed: int = 0) -> torch.Tensor:
    """Rows built from a hidden sparse dictionary, scaled so that E||x||^2 = d."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(atoms, d, generator=g), dim=1)
    out = torch.empty(n, d)
    for start in range(0, n, 8192):
        m = min(8192, n - start)
        chosen = torch.multinomial(torch.ones(m, atoms), active, generator=g)
        mags = torch.empty(m, active).exponential_(1.0, generator=g)
        out[start : start + m] = torch.nn.functional.embedding_bag(
            chosen, dictionary, per_sample_weights=mags, mode="sum"
        ) + 0.05 * torch.randn(m, d, generator=g)
    return out * (d / out.pow(2).sum(dim=1).mean()).sqrt()


def quality(encode_decode, holdout: torch.Tensor, num_latents: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
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


def run_ours(batches: list[torch.Tensor], holdout: torch.Tensor, cfg: dict[str, float]) -> dict[str, float]:
    from sae_core.sae import InMemoryActivations, SaeConfig, TrainConfig, Trainer

    d, latents, k, lr = int(cfg["d"]), int(cfg["latents"]), int(cfg["k"]), cfg["lr"]
    data = torch.cat(batches)
    trainer = Trainer(
        SaeConfig(d_in=d, num_latents=latents, k=k),
        TrainConfig(batch_size=len(batches[0]), lr=lr, epochs=1.0, holdout_fraction=0.0, log_every=10**9),
        InMemoryActivations(data, holdout_fraction=0.0),
        progress=False,
    )
    # Feed the shared batches in their order (the trainer would otherwise shuffle).
    trainer._batches = lambda: iter(batches)  # type: ignore[method-assign]
    trainer.sae.init_from_data(data[:16384])
    trainer.sae.init_from_data = lambda sample: None  # type: ignore[method-assign]
    trainer.evaluate = lambda: None  # type: ignore[method-assign, assignment, return-value]
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    sae = trainer.sae

    def encode_decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = sae.encode(x)
        dense = torch.zeros(len(x), latents).scatter(1, code.latent_indices, code.latent_acts)
        return sae.decode(code.latent_acts, code.latent_indices), dense

    fvu, dead = quality(encode_decode, holdout, latents)
    return {"seconds": seconds, "fvu": fvu, "dead": dead}


def run_sae_lens(
    batches: list[torch.Tensor], holdout: torch.Tensor, cfg: dict[str, float], sparse: bool
) -> dict[str, float]:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    d, latents, k = int(cfg["d"]), int(cfg["latents"]), int(cfg["k"])
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(d_in=d, d_sae=latents, k=k, use_sparse_activations=sparse, dtype="float32")
    )
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
    return {"seconds": seconds, "fvu": fvu, "dead": dead}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few steps (CI smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 60, quick 8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        import sae_lens  # noqa: F401
    except ImportError:
        print("sae-lens is not installed here: run 'make bench-env', then use .venv-bench/bin/python")
        sys.exit(2)
    torch.set_num_threads(args.threads)
    steps = args.steps or (8 if args.quick else 60)
    cfg = {"d": 1024, "latents": 8192, "k": 32, "batch": 4096, "lr": 2e-4 / (8192 / 2**14) ** 0.5}
    batch = int(cfg["batch"])
    data = planted_activations((steps + 4) * batch, 1024, atoms=16384, active=32)
    batches = list(data[: steps * batch].split(batch))
    holdout = data[steps * batch :]
    print(f"{steps} steps x {batch} rows, d_in 1024, 8192 latents, k 32, fp32, {args.threads} threads")
    ours = run_ours(batches, holdout, cfg)
    peers = {}
    for sparse in (False, True):
        name = f"sae_lens(sparse={sparse})"
        try:
            peers[name] = run_sae_lens(batches, holdout, cfg, sparse=sparse)
        except (RuntimeError, NotImplementedError) as exc:  # a mode that cannot train here
            print(f"{name} failed and is left out: {str(exc).splitlines()[0][:160]}")
    rows = {"ours": ours, **peers}
    for name, r in rows.items():
        speed = steps * batch / r["seconds"]
        print(f"{name:24s} {speed:10,.0f} acts/s  fvu {r['fvu']:.4f}  dead {r['dead']:.2%}")
    peer_name = min(peers, key=lambda name: peers[name]["seconds"])
    peer = peers[peer_name]
    ratio = peer["seconds"] / ours["seconds"]
    print(f"peer = {peer_name} (the faster of its two modes)")
    print(
        f"ratio_vs_sae_lens={ratio:.2f} fvu_ours={ours['fvu']:.4f} fvu_peer={peer['fvu']:.4f} "
        f"dead_ours={ours['dead']:.4f} dead_peer={peer['dead']:.4f}"
    )


if __name__ == "__main__":
    main()
