"""Data parallelism under torchrun (issue 38): two CPU ranks (gloo) split the tracks of
extraction and of online training, run half the forward passes each, and train one SAE
per layer with summed gradients: the SAE one process trains on the same frames in the
same order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sae_core.activations.extract import ExtractConfig, batch_residuals, extract, list_tracks, window_batches
from sae_core.models import load_model
from sae_core.sae import InMemoryActivations, SparseCoder, TrainConfig, Trainer
from sae_core.sae.data import stable_fraction
from sae_core.sae.online import OnlineTrainConfig, TrainingStream
from sae_core.sae.trainer import HoldoutStats

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
HOLDOUT = 0.3  # of the ten tracks, by their ids' stable hash: 8 train, 2 held out


@pytest.fixture
def corpus(ten_track_corpus: Path) -> Path:
    return ten_track_corpus


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The ranks' thread count (--threads 1), so that this process's sums round as theirs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _two_ranks(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "sae_core", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)


def test_two_ranks_extract_half_the_tracks_each_with_half_the_forwards(
    tiny_model_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    windows = ["--window-seconds", "1", "--batch-seconds", "2", "--tracks-per-shard", "1"]
    run = _two_ranks("extract", "--model", tiny_model_dir, "--corpus", corpus, "--layers", "1,3",
                     "--out", tmp_path / "two", "--threads", "1", *windows)  # fmt: skip
    assert run.returncode == 0, run.stderr
    markers = [json.loads(p.read_text()) for p in sorted((tmp_path / "two" / "progress").glob("*.json"))]
    tracks = {r: {t for m in markers if m["rank"] == r for t in m["tracks"]} for r in (0, 1)}
    assert len(tracks[0]) == len(tracks[1]) == 5 and not tracks[0] & tracks[1]
    assert tracks[0] | tracks[1] == {t.track_id for t in list_tracks(corpus)}
    forwards = {r: sum(m["forward_passes"] for m in markers if m["rank"] == r) for r in (0, 1)}

    cfg = ExtractConfig(model=str(tiny_model_dir), layers=[1, 3], window_seconds=1, batch_seconds=2,
                        tracks_per_shard=1, threads=1)  # fmt: skip
    extract(load_model(str(tiny_model_dir)), cfg, corpus, tmp_path / "one", progress=False)
    one = sum(json.loads(p.read_text())["forward_passes"] for p in (tmp_path / "one").glob("progress/*.json"))
    assert forwards == {0: one // 2, 1: one // 2} and one == 20  # 30 windows of 1 s, two per forward


@pytest.mark.usefixtures("one_thread")
def test_two_ranks_train_the_sae_one_process_trains_on_the_same_frames(
    tiny_model_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    """Each rank reads half the training tracks (half the forwards); the gradients summed over
    the ranks make one SAE, equal to one process's SAE stepped on both ranks' batches at once."""
    out = tmp_path / "two"
    options = ["--model", tiny_model_dir, "--corpus", corpus, "--out", out, "--layers", "3",
               "--batch-size", "32", "--k", "4", "--expansion", "2", "--holdout", str(HOLDOUT),
               "--seed", "3", "--shuffle-rows", "4096", "--window-seconds", "1", "--batch-seconds", "2",
               "--threads", "1"]  # fmt: skip
    run = _two_ranks("train", *options)
    assert run.returncode == 0, run.stderr
    assert len([row for row in run.stdout.splitlines() if "│ 3 " in row]) == 1, run.stdout  # rank 0 prints
    states = [json.loads((out / f"online_state.rank{r}.json").read_text()) for r in (0, 1)]
    everything = list_tracks(corpus)
    training = {t.track_id for t in everything if stable_fraction(t.track_id) >= HOLDOUT}
    shares = [set(state["tracks"]) for state in states]
    assert len(shares[0]) == len(shares[1]) == 4 and not shares[0] & shares[1]
    assert shares[0] | shares[1] == training

    # The same frames in the same order: each rank's batches, rebuilt from its tracks.
    model = load_model(str(tiny_model_dir))
    cfg = OnlineTrainConfig(
        model=str(tiny_model_dir), corpus=corpus, out=tmp_path / "one", layers=[3], k=4, expansion=2,
        train=TrainConfig(batch_size=32, holdout_fraction=HOLDOUT, seed=3), window_seconds=1.0,
        batch_seconds=2.0, shuffle_rows=4096, progress=False,
    )  # fmt: skip
    by_id = {t.track_id: t for t in everything}
    streams = [TrainingStream(model, cfg, [3]) for _ in states]
    steps = [
        list(stream.steps([by_id[i] for i in state["tracks"]], epoch=0))
        for stream, state in zip(streams, states, strict=True)
    ]
    whole = TrainingStream(model, cfg, [3])
    for _ in whole.steps([by_id[i] for i in sorted(training)], epoch=0):
        pass
    assert whole.forward_passes == 12  # 24 windows of 1 s, two per forward
    assert [state["forward_passes"] for state in states] == [s.forward_passes for s in streams] == [6, 6]

    # One process, batches of 64: rank 0's 32 rows then rank 1's, from both ranks' first rows.
    batches = [torch.cat([a[1][3], b[1][3]]) for a, b in zip(*steps, strict=False)]
    sample = torch.cat([torch.cat(rank_steps[0][2][3])[: 65536 // 2] for rank_steps in steps])
    schedule = TrainConfig(batch_size=64, holdout_fraction=HOLDOUT, seed=3)
    source = InMemoryActivations(torch.cat(batches), holdout_fraction=0)
    trainer = Trainer(cfg.sae_config(model.d_model, 3), schedule, source, progress=False)
    trainer.start(sample=sample)
    for x in batches[: trainer.total_steps]:
        trainer.train_batch(x)
    metrics = json.loads((out / "layer_3" / "metrics.json").read_text())
    assert metrics["steps"] == trainer.step == 18 and metrics["tokens"] == 18 * 64
    two_ranks = load_file(out / "layer_3" / "sae.safetensors")
    diff = max(float((two_ranks[name] - t).abs().max()) for name, t in trainer.sae.state_dict().items())
    print(f"max abs difference, two ranks vs one process: {diff:.3g}")
    # Summed over two ranks, a step's sums round apart from one process's in the last bits;
    # 18 Adam steps grow that to ~1e-4 of weights ~0.5 (1.1e-4 measured).
    assert diff < 1e-3
    assert metrics["history"][-1]["fvu"] == pytest.approx(trainer.fvu_history[-1], abs=1e-4)
    # ... where rank 0's rows alone (no gradients from rank 1) make another SAE.
    alone_schedule = TrainConfig(batch_size=32, max_tokens=18 * 32, seed=3)
    alone = Trainer(trainer.sae_cfg, alone_schedule, source, progress=False)
    alone.start(sample=sample)
    for step in steps[0][:18]:
        alone.train_batch(step[1][3])
    assert float((alone.sae.W_dec.detach() - two_ranks["W_dec"]).abs().max()) > 100 * diff

    # Held-out FVU: each rank measured one of the two held-out tracks; merged over the ranks,
    # the FVU of both. (Each track goes through the model alone, as on its rank: the tiny
    # codec's random codebooks turn last-bit differences of batching into other codes.)
    held, sae = HoldoutStats(), SparseCoder.load_from_disk(out / "layer_3")
    for track in [t for t in everything if t.track_id not in training]:
        for batch in window_batches(model, [track], 1.0, 2.0, []):
            acts, _ = batch_residuals(model, batch, [3], "empty")
            held.add(sae, acts[3].reshape(-1, model.d_model).float())
    assert metrics["holdout_fvu"] == pytest.approx(held.err / held.m2, rel=1e-6)

    # A restarted launch: each rank reads its own position; nothing is left to train.
    again = _two_ranks("train", *options, "--resume")
    assert again.returncode == 0, again.stderr
    assert [json.loads((out / f"online_state.rank{r}.json").read_text()) for r in (0, 1)] == states
    assert load_file(out / "layer_3" / "sae.safetensors").keys() == two_ranks.keys()
    for name, tensor in load_file(out / "layer_3" / "sae.safetensors").items():
        assert torch.equal(tensor, two_ranks[name]), name


def test_two_ranks_interrupted_mid_epoch_resume_each_in_its_own_share(
    tiny_model_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    """Both ranks stop at step 10 of 18 (a checkpoint at 6); ``--resume`` puts each back in its
    own tracks at its next forward batch, and the run ends as an uninterrupted one would: the
    same shares, every forward pass of each share run once, all 18 steps, one history."""
    crashing = tmp_path / "crash_at_10.py"
    crashing.write_text(
        "from sae_core.sae import Trainer\n"
        "step = Trainer.train_batch\n"
        "def crash(self, x):\n"
        "    if self.step == 10:\n"
        "        raise KeyboardInterrupt\n"
        "    return step(self, x)\n"
        "Trainer.train_batch = crash\n"
        "from sae_core.cli import main\n"
        "main()\n"
    )
    out = tmp_path / "run"
    options = ["train", "--model", tiny_model_dir, "--corpus", corpus, "--out", out, "--layers", "3",
               "--batch-size", "32", "--k", "4", "--expansion", "2", "--holdout", str(HOLDOUT),
               "--seed", "3", "--shuffle-rows", "64", "--window-seconds", "1", "--batch-seconds", "2",
               "--threads", "1", "--checkpoint-every", "6"]  # fmt: skip
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", str(crashing), *map(str, options)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stopped = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert stopped.returncode != 0, stopped.stdout
    assert not (out / "run.json").exists()  # an interrupted run is not recorded as done
    at_stop = [json.loads((out / f"online_state.rank{r}.json").read_text()) for r in (0, 1)]
    print("positions at the checkpoint:", at_stop)
    assert all(0 < s["forward_passes"] < 6 for s in at_stop), at_stop  # mid-epoch, for each rank
    checkpoint = torch.load(out / "layer_3" / "trainer_state.pt", weights_only=False)
    assert checkpoint["step"] == 6

    resumed = _two_ranks(*options, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    states = [json.loads((out / f"online_state.rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["tracks"] for s in states] == [s["tracks"] for s in at_stop]  # each rank kept its share
    everything = list_tracks(corpus)
    training = {t.track_id for t in everything if stable_fraction(t.track_id) >= HOLDOUT}
    assert not set(states[0]["tracks"]) & set(states[1]["tracks"])
    assert set(states[0]["tracks"]) | set(states[1]["tracks"]) == training
    assert [s["forward_passes"] for s in states] == [6, 6]  # none repeated, none skipped
    metrics = json.loads((out / "layer_3" / "metrics.json").read_text())
    steps = [h["step"] for h in metrics["history"]]
    assert metrics["steps"] == 18 and steps == sorted(set(steps)), steps  # continued, not restarted
    assert (out / "run.json").is_file()
