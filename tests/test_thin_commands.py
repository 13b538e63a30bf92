"""The command-line modules stay thin: they parse, call one library function, print.

The rule, checked on the source of every command module (issue 20):

* a module holds at most 250 lines;
* a command's body (after its docstring) is at most 35 lines: options in, one config,
  one library call, output;
* any other function in a command module is at most 40 lines;
* no command writes an artifact itself (run records, tables, atomic files): the
  stage's library function does, so a script calling the library gets the same files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    [
        ROOT / "sae_core" / "cli.py",
        *(ROOT / "sae_core" / "commands").glob("*.py"),
        ROOT / "study_app" / "cli.py",
        *(ROOT / "study_app" / "commands").glob("*.py"),
        ROOT / "study_app" / "prolific" / "commands.py",
        ROOT / "analysis" / "cli.py",
        ROOT / "stimuli_builder" / "cli.py",
    ]
)
WRITERS = {"recorded_run", "save_table", "write_text_atomic", "write_bytes_atomic", "to_parquet", "to_csv"}


def _sae_core_commands() -> set[str]:
    from sae_core.cli import COMMANDS

    return {f"{f.__module__}.{f.__name__}" for f in COMMANDS.values()}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _is_command(node: ast.FunctionDef, module: str, registered: set[str]) -> bool:
    decorated = any("command" in ast.unparse(d) for d in node.decorator_list)
    return decorated or f"{module}.{node.name}" in registered


def _body_lines(node: ast.FunctionDef) -> int:
    body = node.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return 0 if not body else (body[-1].end_lineno or 0) - body[0].lineno + 1


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_command_module_is_thin(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= 250, f"{path.name}: over 250 lines"
    module, registered = _module_name(path), _sae_core_commands()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            if _is_command(node, module, registered):
                assert _body_lines(node) <= 35, f"{module}.{node.name}: command body over 35 lines"
            else:
                length = (node.end_lineno or 0) - node.lineno + 1
                assert length <= 40, f"{module}.{node.name}: {length} lines, a library function's size"
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            assert name not in WRITERS, f"{module}: writes an artifact itself ({name}, line {node.lineno})"


def test_every_sae_core_command_is_registered_and_checked() -> None:
    # A command module the rule above did not see would escape it.
    registered = _sae_core_commands()
    seen = {m for p in MODULES for m in [_module_name(p)]}
    assert {name.rsplit(".", 1)[0] for name in registered} <= seen
    assert len(registered) == 19


def test_every_study_app_command_is_checked() -> None:
    # Commands live beside the code they drive (study_app/prolific/commands.py); one in a
    # module missing from MODULES would escape the rule.
    from study_app import create_app

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    seen = {_module_name(p) for p in MODULES}
    ours = {c.callback.__module__ for c in app.cli.commands.values() if c.callback is not None}
    ours = {m for m in ours if m.startswith("study_app.") and m != "study_app.db"}
    assert ours and ours <= seen, ours - seen


# One default, one range per option (issue 39): an sae-core option of a config field is
# built from the field (sae_core.commands._common.option: default, help, range), so a
# command states none of them again. What a command may state itself, and why:
OWN_DEFAULTS = {
    ("sae_core.commands.corpus", "tiny_model", "seed"): "build_tiny's argument: no config holds it",
    ("sae_core.commands.corpus", "tiny_clap", "seed"): "build_tiny_clap's argument: no config holds it",
    ("sae_core.commands.planning", "plan", "as_json"): "how the plan prints, not what it plans",
    ("analysis.cli", "report", "keep_incomplete"): "the inverse of ExclusionRules.incomplete (a flag "
    "that only switches a rule off)",
    ("analysis.cli", "report", "anchor_rule"): "switches PostScreening.anchor_above to None",
    ("stimuli_builder.cli", "build", "force"): "whether to replace a directory, not what is built",
}
# Fields whose flag is not the field's name with dashes (sae_core.commands._common.FLAGS).
RENAMED = {
    "audio_format": "--format: every command that writes audio says it so; 'format' shadows a builtin",
    "holdout_fraction": "--holdout: a flag's share is read as a fraction already",
    "guidance_scale": "--guidance: MusicGen's users say guidance; the field keeps transformers' name",
    "parts": "--only: 'mini-models --only codec' reads as what it does (retrain only these)",
    "allreduce_gb_per_s": "--allreduce-gbps: a shell-friendly unit spelling",
    "SteerConfig.seconds": "--duration: seconds is the unit; the flag says what it measures",
    "SteeringTruthConfig.seconds": "--duration: as steer's",
    "SteeringTruthConfig.prompts_per_feature": "--prompts: steer's --prompts is a file; here a count per "
    "feature, kept since its first release",
}


def restated_defaults(source: str, module: str) -> list[str]:
    """Every typer option in ``source`` that states a range (min=, max=) or a default other
    than ``...`` (required) or ``None`` (not given), unless ``OWN_DEFAULTS`` says why."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        params = node.args.args + node.args.kwonlyargs
        defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
        defaults += node.args.kw_defaults
        for param, default in zip(params, defaults, strict=True):
            if not (
                isinstance(default, ast.Call)
                and ast.unparse(default.func) in ("typer.Option", "typer.Argument")
            ):
                continue
            where = f"{module}.{node.name}({param.arg})"
            ranges = [k.arg for k in default.keywords if k.arg in ("min", "max")]
            if ranges:
                found.append(f"{where} states a range ({', '.join(ranges)}=): the config's field holds it")
            first = default.args[0] if default.args else None
            stated = first is not None and not (
                isinstance(first, ast.Constant) and first.value in (..., None)
            )
            if stated and (module, node.name, param.arg) not in OWN_DEFAULTS:
                found.append(f"{where} states its default {ast.unparse(first)}: use option(Config, field)")
    return found


def test_no_typer_command_restates_a_default_or_a_range() -> None:
    # sae-core, study-analysis and stimuli-builder (study-app's click commands take no
    # config dataclass: ids, a file, a count).
    paths = [
        ROOT / "sae_core" / "cli.py",
        *(ROOT / "sae_core" / "commands").glob("*.py"),
        ROOT / "analysis" / "cli.py",
        ROOT / "stimuli_builder" / "cli.py",
    ]
    found = [v for p in paths for v in restated_defaults(p.read_text(), _module_name(p))]
    assert not found, "\n".join(found)


def test_the_check_catches_a_restated_default_and_range() -> None:
    # What sae-core train's --k was before issue 39: 32 and min=1, both also in SaeConfig.
    before = 'def train(k: int = typer.Option(32, "--k", min=1, help="Active latents.")) -> None: ...'
    after = 'def train(k: int = option(SaeOptions, "k")) -> None: ...'
    assert len(restated_defaults(before, "m")) == 2
    assert restated_defaults(after, "m") == []


# study-app's click options that state a default: none is a config field.
CLICK_OWN_DEFAULTS = {
    ("study_app.commands.study", "serve_command", "--host"): "where the server listens, not what a study is",
    ("study_app.commands.study", "serve_command", "--port"): "as --host",
    ("study_app.commands.study", "export_command", "--format"): "the file type written, a click.Choice",
    (
        "study_app.commands.study",
        "export_command",
        "--table",
    ): "which table is written, a click.Choice as --format",
}


def click_restated(source: str, module: str) -> list[str]:
    """Every ``click.option`` in ``source`` that states a default or a range type
    (IntRange, FloatRange) itself, unless ``CLICK_OWN_DEFAULTS`` says why."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and ast.unparse(deco.func) == "click.option"):
                continue
            decl = deco.args[0].value if deco.args and isinstance(deco.args[0], ast.Constant) else "?"
            where = f"{module}.{node.name}({decl})"
            for k in deco.keywords:
                if k.arg == "type" and "Range" in ast.unparse(k.value):
                    found.append(
                        f"{where} states a range ({ast.unparse(k.value)}): the config's field holds it"
                    )
                if k.arg == "default" and (module, node.name, decl) not in CLICK_OWN_DEFAULTS:
                    found.append(f"{where} states its default {ast.unparse(k.value)}: use field_option")
    return found


def test_no_study_app_command_restates_a_default_or_a_range() -> None:
    paths = [*(ROOT / "study_app" / "commands").glob("*.py"), ROOT / "study_app" / "prolific" / "commands.py"]
    found = [v for p in paths for v in click_restated(p.read_text(), _module_name(p))]
    assert not found, "\n".join(found)
    # What study-app simulate's --participants was before: 10 and IntRange(1), both in BotConfig.
    before = '@click.option("--participants", default=10, type=click.IntRange(1))\ndef simulate(): ...'
    assert len(click_restated(before, "m")) == 2


ANALYSIS_RENAMED = {
    "min_attention_correct": "--min-attention: the flag since the first release; the field says the unit",
    "min_median_rt_ms": "--min-median-rt: as --min-attention",
    "reference_below": "--mushra-reference-below: the report has other rules; the flag says which test",
    "anchor_above": "--mushra-anchor-above: as --mushra-reference-below",
    "max_share": "--mushra-max-share: as --mushra-reference-below",
}


def test_every_renamed_flag_says_why() -> None:
    from analysis.cli import FLAGS as ANALYSIS_FLAGS
    from sae_core.commands._common import FLAGS

    for flags, reasons in ((FLAGS, RENAMED), (ANALYSIS_FLAGS, ANALYSIS_RENAMED)):
        assert set(flags) == set(reasons)
        assert all(reasons[name].startswith(flags[name] + ":") for name in flags)


def test_an_option_shows_the_fields_default_help_and_range_and_the_config_checks_it() -> None:
    from typer.testing import CliRunner

    from sae_core.cli import app
    from sae_core.sae.config import SaeConfig

    runner = CliRunner()
    shown = " ".join(runner.invoke(app, ["train", "--help"], terminal_width=200).output.split())
    assert "Active latents per frame (topk)" in shown  # SaeConfig.k's docstring
    assert "[>= 1]" in shown and "[default: 32]" in shown
    assert SaeConfig.__dataclass_fields__["k"].default == 32
    # One check, in the config: the command line meets it as the library does.
    result = runner.invoke(app, ["train", "--acts", "nowhere", "--out", "x", "--k", "0"])
    assert result.exit_code == 2
    assert "--k must be >= 1, got 0" in " ".join(result.output.split())
