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
