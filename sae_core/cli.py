"""``sae-core``: the model-side stages of the pipeline (corpus, activations, SAEs, features).

The commands live in ``sae_core.commands``, one module per group; this module names them.
"""

from __future__ import annotations

from collections.abc import Callable

from artifact_schemas.console import typer_app
from sae_core.commands import activations, corpus, features, mini, planning, steering
from sae_core.numerics import pin_cpu_numerics

app = typer_app(
    "sae-core",
    "Find concepts in a music generator: build a corpus, record activations, train "
    "sparse autoencoders, label and steer features.",
)

COMMANDS: dict[str, Callable[..., None]] = {
    "synth-corpus": corpus.synth_corpus,
    "tiny-model": corpus.tiny_model,
    "extract": activations.extract,
    "train": activations.train,
    "features": features.features,
    "steer": steering.steer,
    "concepts": features.concepts,
    "fit-codec": mini.fit_codec,
    "mini-models": mini.mini_models,
    "train-codec": mini.train_codec,
    "train-musicgen": mini.train_musicgen,
    "train-clap": mini.train_clap,
    "tiny-clap": corpus.tiny_clap,
    "label": features.label,
    "steering-eval": steering.steering_eval,
    "steering-truth": steering.steering_truth,
    "summarize": features.summarize,
    "metrics": activations.metrics,
    "plan": planning.plan,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


def main() -> None:
    # Before any command imports torch: the same bytes on every x86-64 machine (see numerics).
    pin_cpu_numerics()
    app()
