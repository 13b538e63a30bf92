"""The installed project as a user meets it: console scripts, python -m, import boundaries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SCRIPTS = {
    "sae-core": ("sae_core", "synth-corpus"),
    "stimuli-builder": ("stimuli_builder", "validate"),
    "study-app": ("study_app", "init-db"),
    "study-analysis": ("analysis", "summary"),
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_script_help_lists_its_commands(script: str) -> None:
    module, command = SCRIPTS[script]
    for argv in ([str(BIN / script), "--help"], [sys.executable, "-m", module, "--help"]):
        result = _run(*argv)
        assert result.returncode == 0, result.stderr
        assert command in result.stdout


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_script_version_is_the_changelogs(script: str) -> None:
    import re
    from importlib.metadata import version

    changelog = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text()
    newest = re.search(r"^## (\S+)", changelog, re.M)
    assert newest and newest[1] == version("music-concepts")
    result = _run(str(BIN / script), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"music-concepts {newest[1]}"


def test_light_packages_never_import_torch_or_transformers() -> None:
    # A fresh interpreter: this test process may already have imported torch.
    code = (
        "import sys, study_app, stimuli_builder, analysis, artifact_schemas\n"
        "import study_app.cli, stimuli_builder.cli, analysis.cli\n"
        "study_app.create_app({'SQLALCHEMY_DATABASE_URI': 'sqlite://'})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "assert not heavy, heavy\n"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr


def test_the_web_worker_loads_no_test_driver_and_no_other_stage() -> None:
    # What gunicorn's create_app imports: the app, not the bots (study_app.simulate, a test
    # driver behind `study-app simulate`), the analysis' simulator or another stage.
    code = (
        "import sys\n"
        "from study_app import create_app\n"
        "create_app({'SQLALCHEMY_DATABASE_URI': 'sqlite://'})\n"
        "loaded = sorted(m for m in sys.modules if m == 'study_app.simulate'\n"
        "                or m.split('.')[0] in ('analysis', 'sae_core', 'stimuli_builder', 'torch'))\n"
        "assert not loaded, loaded\n"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
