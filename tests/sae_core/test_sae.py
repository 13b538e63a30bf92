"""The sparse autoencoder: exact gradients, planted-dictionary recovery, checkpoints, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from artifact_schemas import recorded_run
from sae_core.sae import InMemoryActivations, SaeConfig, SparseCoder, TrainConfig, Trainer
from sae_core.sae.data import ShardedActivations

BIN = Path(sys.executable).parent


def planted(
    n: int, d: int = 256, atoms: int = 2048, active: int = 10, noise: float = 0.05, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that are sums of ``active`` random unit atoms with magnitudes 0.5 + Exp(1), plus noise."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(atoms, d, generator=g), dim=1)
    parts = []
    for start in range(0, n, 10000):
        m = min(10000, n - start)
        chosen = torch.multinomial(torch.ones(m, atoms), active, generator=g)
        magnitude = torch.empty(m, active).exponential_(1.0, generator=g) + 0.5
        clean = torch.nn.functional.embedding_bag(
            chosen, dictionary, per_sample_weights=magnitude, mode="sum"
        )
        parts.append(clean + noise * torch.randn(m, d, generator=g))
    return torch.cat(parts), dictionary


# Every third latent dead takes AuxK's masked path, every fifth (under a quarter) its gather.
@pytest.mark.parametrize("dead_every", [3, 5])
@pytest.mark.parametrize("activation", ["topk", "batchtopk", "relu"])
def test_gradients_match_dense_autograd(activation: str, dead_every: int) -> None:
    torch.manual_seed(0)
    sae = SparseCoder(SaeConfig(d_in=8, num_latents=32, k=4, activation=activation)).double()  # type: ignore[arg-type]
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(16, 8, dtype=torch.float64)
    dead = torch.zeros(32, dtype=torch.bool)
    dead[::dead_every] = True
    out = sae(x, dead_mask=dead)
    (out.fvu + out.auxk_loss).backward()
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    # The same losses written densely, differentiated by autograd.
    xs = x * sae.input_scale
    pre = torch.relu((xs - sae.b_dec) @ sae.W_enc.T + sae.b_enc)
    if activation == "topk":
        vals, idx = pre.topk(4, dim=1)
        code = torch.zeros_like(pre).scatter(1, idx, vals)
    elif activation == "batchtopk":
        flat = pre.reshape(-1)
        keep = torch.zeros_like(flat).scatter(0, flat.topk(4 * 16).indices, 1.0)
        code = (flat * keep).reshape(pre.shape)
    else:
        code = pre
    recon = code @ sae.W_dec + sae.b_dec
    loss = (recon - xs).pow(2).sum() / (xs - xs.mean(0)).pow(2).sum()
    if activation != "relu":
        residual = (xs - recon).detach()
        masked = torch.where(dead[None], pre, torch.zeros_like(pre))
        vals, idx = masked.topk(min(4, int(dead.sum())), dim=1)
        aux = torch.zeros_like(pre).scatter(1, idx, vals) @ sae.W_dec
        loss = loss + (aux - residual).pow(2).sum() / (residual - residual.mean(0)).pow(2).sum()
    loss.backward()
    for name, param in sae.named_parameters():
        torch.testing.assert_close(sparse_grads[name], param.grad, rtol=1e-9, atol=1e-9, msg=name)


def test_decoder_rows_stay_unit_norm_and_gradient_is_tangent() -> None:
    sae = SparseCoder(SaeConfig(d_in=16, num_latents=64, k=4))
    out = sae(torch.randn(32, 16))
    out.fvu.backward()
    sae.remove_gradient_parallel_to_decoder_directions()
    assert torch.allclose((sae.W_dec.grad * sae.W_dec).sum(dim=1), torch.zeros(64), atol=1e-6)
    with torch.no_grad():
        sae.W_dec.mul_(3)
    sae.set_decoder_norm_to_unit_norm()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-6)


def test_sparse_decode_costs_only_active_rows() -> None:
    sae = SparseCoder(SaeConfig(d_in=16, num_latents=100_000, k=4))
    x = torch.randn(8, 16)
    code = sae.encode(x)
    assert code.latent_acts.shape == (8, 4)
    dense = torch.zeros(8, 100_000).scatter(1, code.latent_indices, code.latent_acts)
    expected = (dense @ sae.W_dec + sae.b_dec) / sae.input_scale
    torch.testing.assert_close(sae.decode(code.latent_acts, code.latent_indices), expected)


@pytest.mark.slow
def _assert_recovers(n: int, d: int, atoms: int, active: int, k: int, epochs: int, batch: int) -> None:
    """Train on planted data; the SAE must find the atoms and reach the oracle's FVU."""
    data, dictionary = planted(n, d=d, atoms=atoms, active=active)
    cfg = SaeConfig(d_in=d, num_latents=atoms, k=k)
    train = TrainConfig(batch_size=batch, epochs=epochs, lr=2e-3, seed=0)
    trainer = Trainer(cfg, train, InMemoryActivations(data), progress=False)
    metrics = trainer.fit()
    best_cos = (dictionary @ trainer.sae.W_dec.detach().T).max(dim=1).values
    assert best_cos.mean() >= 0.9, best_cos.mean()
    assert metrics.dead_fraction < 0.05, metrics
    # The FVU floor of a TopK SAE on this data: the same SAE started *at* the true
    # dictionary. A linear encoder cannot separate superposed atoms exactly, so that floor
    # is ~0.13-0.14, not 0 (see docs/sae.md); training from scratch must reach it.
    oracle = Trainer(
        cfg,
        TrainConfig(batch_size=batch, epochs=2, lr=1e-3, seed=0),
        InMemoryActivations(data),
        progress=False,
    )
    oracle.sae.init_from_data(data[:65536])
    with torch.no_grad():
        oracle.sae.W_dec.copy_(dictionary)
        oracle.sae.W_enc.copy_(dictionary)
    oracle.sae.init_from_data = lambda sample: None  # type: ignore[method-assign]
    floor = oracle.fit()
    assert metrics.holdout_fvu <= floor.holdout_fvu + 0.03, (metrics, floor)


def test_planted_dictionary_is_recovered() -> None:
    # 50k rows, 512 atoms in 128 dims, 6 active: a few seconds of CPU (about 4 s on two
    # quiet cores), with margins measured at cos 0.96 (>= 0.9), dead 0.2 % (< 5 %) and FVU
    # 0.012 above the oracle (<= 0.03), the same with one thread or another training seed.
    _assert_recovers(50_000, d=128, atoms=512, active=6, k=8, epochs=8, batch=512)


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_planted_dictionary_is_recovered_at_scale() -> None:
    """The same at 200k rows and 2048 latents: minutes of CPU, so only with ``pytest -m long``."""
    _assert_recovers(200_000, d=256, atoms=2048, active=10, k=12, epochs=6, batch=1024)


def test_checkpoint_round_trip_and_resume_continue_training(tmp_path: Path) -> None:
    data, _ = planted(8192, d=32, atoms=64, active=3)
    cfg = SaeConfig(d_in=32, num_latents=128, k=4)
    train = TrainConfig(batch_size=256, epochs=4, checkpoint_every=20, seed=1)
    full = Trainer(cfg, train, InMemoryActivations(data), tmp_path / "full", progress=False)
    full_metrics = full.fit()
    loaded = SparseCoder.load_from_disk(tmp_path / "full")
    for name, tensor in full.sae.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["steps"] == full_metrics.steps and 0 <= metrics["holdout_fvu"] < 1

    # Interrupted right after the checkpoint at step 40, then resumed: the same final weights.
    class Interrupted(Trainer):
        def _train_step(self, x: torch.Tensor) -> tuple[float, float, float]:
            if self.step == 40:
                raise KeyboardInterrupt
            return super()._train_step(x)

    with pytest.raises(KeyboardInterrupt):
        Interrupted(cfg, train, InMemoryActivations(data), tmp_path / "part", progress=False).fit()
    resumed = Trainer(cfg, train, InMemoryActivations(data), tmp_path / "part", progress=False)
    resumed.fit(resume=True)
    assert resumed.step == full.step
    for name, tensor in full.sae.state_dict().items():
        torch.testing.assert_close(resumed.sae.state_dict()[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_cli_train_on_extracted_activations(extracted_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "sae"
    cmd = [
        str(BIN / "sae-core"),
        "train",
        "--acts",
        str(extracted_small / "layer_1"),
        "--out",
        str(out),
        "--k",
        "4",
        "--expansion",
        "2",
        "--batch-size",
        "128",
        "--epochs",
        "2",
        "--holdout",
        "0.2",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "held-out FVU" in result.stdout
    assert {"cfg.json", "sae.safetensors", "metrics.json", "run.json"} <= {p.name for p in out.iterdir()}
    sae = SparseCoder.load_from_disk(out)
    assert sae.cfg.num_latents == 128 and sae.cfg.k == 4


def test_cli_train_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "sae-core"), "train", "--acts", "/nonexistent", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "/nonexistent" in lines[0]


def test_holdout_metrics_are_streamed_and_match_the_two_pass_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = planted(20_000, d=32, atoms=64, active=3)
    data = data + 40.0  # a large mean: a naive one-pass sum of squares would cancel here
    cfg = SaeConfig(d_in=32, num_latents=128, k=4)
    trainer = Trainer(
        cfg, TrainConfig(batch_size=256, epochs=1, seed=0), InMemoryActivations(data), progress=False
    )
    trainer.fit()
    held = torch.cat(list(trainer.source.batches(256, 0, 0, "holdout"))).double()
    assert len(held) > 3 * 256  # several batches, so streaming is exercised
    with torch.no_grad():
        trainer.sae.eval()
        code = trainer.sae.encode(held.float())
        recon = trainer.sae.decode(code.latent_acts, code.latent_indices).double()
        trainer.sae.train()
    expected = float(((recon - held) ** 2).sum() / ((held - held.mean(dim=0)) ** 2).sum())

    # Each held-out batch is evaluated before the next is read: the split is never
    # gathered in memory (a real run holds out millions of frames).
    evaluated: list[int] = []
    read = trainer.source.batches
    encode = trainer.sae.encode

    def batches(*args: object) -> Iterator[torch.Tensor]:
        for i, batch in enumerate(read(*args)):  # type: ignore[arg-type]
            assert len(evaluated) == i, "evaluate read ahead of what it had evaluated"
            yield batch

    def counting_encode(x: torch.Tensor) -> object:
        evaluated.append(len(x))
        return encode(x)

    monkeypatch.setattr(trainer.source, "batches", batches)
    monkeypatch.setattr(trainer.sae, "encode", counting_encode)
    metrics = trainer.evaluate()
    assert sum(evaluated) == len(held)
    assert metrics.holdout_fvu == pytest.approx(expected, rel=1e-6)


def test_a_run_that_learned_nothing_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 38: training that ends worse than predicting the mean, or with most latents
    dead, printed no warning."""
    data, _ = planted(4096, d=32, atoms=64, active=3)
    cfg = SaeConfig(d_in=32, num_latents=128, k=4)
    train = TrainConfig(batch_size=256, epochs=1, lr=1.0, seed=0)  # diverges
    with caplog.at_level("WARNING", logger="sae_core.sae.trainer"):
        metrics = Trainer(cfg, train, InMemoryActivations(data), progress=False).fit()
    assert metrics.holdout_fvu >= 1 and metrics.dead_fraction > 0.5, metrics
    assert any("held-out FVU" in r.message and ">= 1" in r.message for r in caplog.records), caplog.text
    assert any("latents are dead" in r.message for r in caplog.records), caplog.text


@pytest.fixture(scope="module")
def shipped_model_acts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Layer 3 of the shipped mini MusicGen on twelve unseen synthetic tracks (the demo's
    layer, model and kind of music: real activations, not planted ones)."""
    from sae_core.activations.extract import ExtractConfig, extract
    from sae_core.models import load_model
    from sae_core.synth import synth_corpus

    root = Path(__file__).resolve().parents[2]
    model = str(root / "mini-models" / "musicgen")
    corpus = tmp_path_factory.mktemp("corpus")
    with recorded_run(corpus, "synth-corpus", seeds={"seed": 11}):
        synth_corpus(corpus, n_tracks=12, seconds=8, seed=11)
    out = tmp_path_factory.mktemp("acts")
    result = extract(load_model(model), ExtractConfig(model=model, layers=[3]), corpus, out, progress=False)
    assert result.finished
    return out / "layer_3"


def test_the_default_learning_rate_learns_real_activations_in_200_steps(shipped_model_acts: Path) -> None:
    """Issue 38: with Gao et al.'s long-run learning rate as the default, 200 steps left the
    dictionary near its random start on the demo's activations (held-out FVU 0.54 at 8192
    latents), and nothing said so. The default now learns them; Gao's rule, passed as
    --lr, is kept as the reference it must beat. The encoder's starting scale (part of the
    way to the least-squares one) gets it below what the tied scale reached (0.095)
    without killing most latents."""
    source = ShardedActivations(shipped_model_acts, holdout_fraction=0.1)
    cfg = SaeConfig(d_in=source.d_in, num_latents=2048, k=32)
    schedule = {"batch_size": 512, "max_tokens": 200 * 512, "seed": 0, "checkpoint_every": 0}
    default = Trainer(cfg, TrainConfig(**schedule), source, progress=False).fit()  # type: ignore[arg-type]
    gao = 2e-4 / (cfg.num_latents / 2**14) ** 0.5
    reference = Trainer(cfg, TrainConfig(**schedule, lr=gao), source, progress=False).fit()  # type: ignore[arg-type]
    # Measured: 0.072 held-out, 16% dead (0.095 and few dead with the tied encoder scale,
    # 0.069 and 42% dead at the least-squares scale; Gao's rule 0.366). Issue 38 asked for
    # < 0.01, sparsify's figure on the d-64 model of the time; on these 4,800 frames of
    # today's d-128 model, at the shapes (8192 latents, batches of 4096),
    # bench_sae_train --acts reads ours 0.113 against sparsify's 0.136.
    assert default.holdout_fvu < 0.085, default
    assert default.holdout_fvu < reference.holdout_fvu / 2.5, (default, reference)
    assert default.dead_fraction < 0.3, default
