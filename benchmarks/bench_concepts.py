"""Ground truth for the whole method: does the pipeline find and label the concepts its model
learned? (issue 18.5.)

Runs the project's own chain, through the same library entry points the commands call, on
a demo-sized synthetic corpus whose concepts are known exactly: ``synth.write_corpus``
(24 tracks x 10 s, seed 0, as ``make demo``), ``extract.extract_activations``,
``sae.train_sae`` per layer, ``features.run_features``, ``labeling.label_features``
(``descriptors``, and ``clap-vocab`` with ``--clap``) and ``concepts.run_concepts``, then
reads the numbers issue 18 asks for:

* ``concept_auroc``: the mean over concept values of the best SAE feature's held-out AUROC,
  at the layer where that mean is highest;
* ``sae_vs_neuron``: that mean over the mean of the best single residual dimension's
  AUROCs at the same layer (the strongest simple peer: a feature that only re-finds a
  neuron is no finding);
* ``onset_err_ms``: the median |detected - true| drum entry of the best drums feature;
* ``label_acc``: the share of matched features (AUROC >= 0.9) whose top ``descriptors``
  label names the concept (``n/a`` when nothing matches);
* ``steer_3way``: ``sae-core steering-truth`` on the matched features (prompts lacking the
  concept, strengths 0.5-8 x max activation, 8 seeds): the share of cases whose steered
  clip the reader picks among steered / baseline / control (chance 1/3), at the strength
  where it is highest; ``n/a`` when nothing matches. The baseline and control shares and
  the flatness guard at that strength are printed above it.

``--sabotage sign`` flips every steering vector (the bug a sign slip would make): the
steered share must then fall to or below the control's, or the benchmark cannot catch
what it exists for. (The 10-frame misalignment check of the onset error is a unit test:
``tests/sae_core/test_concepts.py``.)

With the random tiny preset (the default ``--model``) the expected reading is chance:
AUROCs near 0.5-0.7, no matched features. Trained mini models (issue 17) are what should
move these numbers; run ``--model models/mini/musicgen --clap models/mini/clap`` then.

Usage: python benchmarks/bench_concepts.py [--model DIR] [--clap DIR] [--tracks 24] [--work DIR]
       [--sabotage sign]
Last line: ``concept_auroc=... sae_vs_neuron=... onset_err_ms=... label_acc=... steer_3way=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

LAYERS = (1, 3)


def run_chain(work: Path, model: str, clap: str | None, tracks: int, seconds: float) -> pd.DataFrame:
    """The pipeline from corpus to concepts.parquet; returns the concepts table."""
    from sae_core.concepts import ConceptsConfig, run_concepts
    from sae_core.extract import ExtractConfig, extract_activations
    from sae_core.features import ExampleSelection, FeaturesConfig, run_features
    from sae_core.labeling import LabelConfig, label_features
    from sae_core.sae import TrainConfig, TrainSaeConfig, train_sae
    from sae_core.synth import SynthConfig, write_corpus

    corpus, run = work / "corpus", work / "run"
    write_corpus(SynthConfig(out=corpus, tracks=tracks, seconds=seconds, seed=0))
    extract_activations(
        ExtractConfig(model=model, layers=list(LAYERS), corpus=corpus, out=run / "acts"), progress=False
    )
    schedule = TrainConfig(batch_size=512, epochs=10, lr=2e-3)
    for layer in LAYERS:
        acts = run / "acts" / f"layer_{layer}"
        train_sae(
            TrainSaeConfig(acts=acts, out=run / "sae" / f"layer_{layer}", k=8, expansion=4, train=schedule)
        )
        sae, out = run / "sae" / f"layer_{layer}", run / "features" / f"layer_{layer}"
        run_features(
            FeaturesConfig(sae, acts, corpus, out, selection=ExampleSelection(top=5)), progress=False
        )
    labels = run / "labels.parquet"
    labelers = ["descriptors", *(["clap-vocab"] if clap else [])]
    features = [run / "features" / f"layer_{layer}" for layer in LAYERS]
    label_features(LabelConfig(features=features, out=labels, labelers=labelers, corpus=corpus, clap=clap))
    return run_concepts(ConceptsConfig(run=run, corpus=corpus, labels=labels, clap=clap))


def steer(work: Path, model: str) -> pd.DataFrame:
    """Steering against the truth on the run's matched features (empty when none match)."""
    from sae_core.steering_truth import SteeringTruthConfig, run_steering_truth

    return run_steering_truth(SteeringTruthConfig(work / "run", work / "corpus", model), progress=False)


def best_strength(summary: pd.DataFrame) -> pd.Series | None:
    """Mean over matched features of each strength's shares; the row where steered is chosen most."""
    if summary.empty:
        return None
    by_strength = summary.groupby("strength")[
        ["chose_steered", "chose_baseline", "chose_control", "flatness_ratio", "reader_accuracy"]
    ].mean()
    return by_strength.loc[by_strength["chose_steered"].idxmax()].rename(
        by_strength["chose_steered"].idxmax()
    )


def readings(table: pd.DataFrame, truth: pd.DataFrame, steering: pd.Series | None) -> dict[str, str]:
    """Issue 18's numbers from the concepts table and labels_vs_truth."""
    sae, neuron = (table[table["method"] == m] for m in ("sae", "neuron"))
    by_layer = sae.groupby("layer")["auroc"].mean()
    best = int(by_layer.idxmax())
    neuron_mean = neuron.loc[neuron["layer"] == best, "auroc"].mean()
    onsets = sae.loc[(sae["layer"] == best) & (sae["concept"] == "drums"), "onset_error_ms"].dropna()
    named = truth.loc[truth["labeler"] == "descriptors", "names_concept"] if len(truth) else pd.Series([])
    return {
        "best_layer": str(best),
        "concept_auroc": f"{by_layer[best]:.3f}",
        "sae_vs_neuron": f"{by_layer[best] / neuron_mean:.3f}",
        "onset_err_ms": f"{onsets.median():.0f}" if len(onsets) else "n/a",
        "label_acc": f"{named.mean():.2f}" if len(named) else "n/a",
        "steer_3way": "n/a" if steering is None else f"{steering['chose_steered']:.2f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="MusicGen directory (default: the random tiny preset, built here)")
    parser.add_argument("--clap", help="CLAP directory (default: none; descriptors only)")
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--work", type=Path, help="keep the run here (default: a temporary directory)")
    parser.add_argument("--sabotage", choices=["sign"], help="break steering on purpose (see above)")
    args = parser.parse_args()
    if args.sabotage == "sign":
        import sae_core.steering as steering

        right = steering.steering_vector
        steering.steering_vector = lambda *a, **k: -right(*a, **k)  # generate_pairs looks it up here
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        model = args.model
        if model is None:
            from sae_core.models import build_tiny_musicgen

            model = str(build_tiny_musicgen(work / "tiny-musicgen", seed=0))
        started = time.perf_counter()
        table = run_chain(work, model, args.clap, args.tracks, args.seconds)
        truth_path = work / "run" / "concepts" / "labels_vs_truth.parquet"
        truth = pd.read_parquet(truth_path) if truth_path.is_file() else pd.DataFrame()
        print(
            f"chain on {args.tracks} x {args.seconds:g} s with {model}: {time.perf_counter() - started:.0f} s"
        )
        sae = table[table["method"].isin(["sae", "neuron", "pca"])]
        print(
            sae.pivot_table(index=["concept", "value"], columns=["method", "layer"], values="auroc").round(3)
        )
        at = best_strength(steer(work, model))
        if at is not None:
            print(
                f"steering at {at.name:g} x max activation: steered chosen {at['chose_steered']:.2f}, "
                f"baseline {at['chose_baseline']:.2f}, control {at['chose_control']:.2f} (chance 0.33); "
                f"flatness steered/baseline {at['flatness_ratio']:.2f}; "
                f"reader accuracy {at['reader_accuracy']:.2f}"
            )
        r = readings(table, truth, at)
        matched = truth["feature_id"].nunique() if len(truth) else 0
        print(f"best layer {r.pop('best_layer')}; matched features (AUROC >= 0.9): {matched}")
        print(" ".join(f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
