"""The README's commands, run as a reader would paste them.

Every fenced ``bash`` block of README.md is run in order, as one shell script in a
scratch directory that links the checkout's ``.venv``, ``examples`` and ``deploy``.
The first block (``make demo`` / ``make test``) is proven elsewhere: ``make test`` is
what CI runs (``.ci/run``), ``make demo`` is run by ``tests/test_demo.py``. Blocks
whose first line is ``# needs real weights`` are not run (no weights or GPU here);
instead every option they use is checked against the tool's ``--help``, so they
cannot drift from the code. The command blocks of ``docs/*.md`` get the same check.

What the test changes, and nothing more: the ports and the PostgreSQL address are
swapped for free ones and a database of its own (each swap must occur in the
README), a server the README leaves running goes to the background and is waited
for, and the password that ``create-admin`` asks for is typed on its stdin.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
NEEDS_WEIGHTS = "# needs real weights"
PASSWORD = "readme-test-password"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """Logical command lines: continuations joined, comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def without_comment(command: str) -> str:
    """The command without a trailing ``# comment`` (a ``#`` inside quotes stays)."""
    quote = ""
    for i, char in enumerate(command):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip()
    return command


def _is_server(command: str) -> bool:
    return " serve " in f" {command} " or "/gunicorn " in command


def _script(blocks: list[str], swaps: dict[str, str]) -> str:
    """One bash script of the blocks, with the swaps and the waits described above."""
    lines = [
        "set -euo pipefail",
        "servers=()",
        'trap \'for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done; wait\' EXIT',
    ]
    servers = 0
    for block in blocks:
        for command in map(without_comment, commands(block)):
            for old, new in swaps.items():
                command = command.replace(old, new)
            lines.append(f"echo {shlex.quote('$ ' + command)}")
            if _is_server(command):
                port = re.search(r"(?:--port |127\.0\.0\.1:)(\d+)", command)
                assert port, f"server command without a port: {command}"
                n, servers = servers, servers + 1
                lines += [
                    f"{command} > server-{n}.log 2>&1 &",
                    "servers+=($!)",
                    f"for _ in $(seq 150); do (exec 3<>/dev/tcp/127.0.0.1/{port[1]}) 2>/dev/null && break;"
                    " sleep 0.2; done",
                    f"(exec 3<>/dev/tcp/127.0.0.1/{port[1]}) || {{ cat server-{n}.log; exit 1; }}",
                ]
            elif "create-admin" in command and "--password-stdin" not in command:
                lines.append(f"printf '%s\\n%s\\n' {PASSWORD} {PASSWORD} | {command}")
            else:
                lines.append(command)
    return "\n".join(lines) + "\n"


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    first = bash_blocks(README.read_text())[0]
    assert [without_comment(c) for c in commands(first)] == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == [
        "exec make test"
    ]


@pytest.mark.slow
@pytest.mark.timeout(1900)  # against a hang; busy cores double its time (issue 15)
def test_every_readme_command_runs(tmp_path: Path, postgres_database: str, port: Any, wait_for: Any) -> None:
    text = README.read_text()
    blocks = [b for b in bash_blocks(text)[1:] if not b.startswith(NEEDS_WEIGHTS)]
    participants_port, gunicorn_port = port(), port()
    swaps = {
        "--port 5000": f"--port {participants_port}",
        "127.0.0.1:5000": f"127.0.0.1:{participants_port}",
        "127.0.0.1:8000": f"127.0.0.1:{gunicorn_port}",
        "postgresql://study@127.0.0.1:5432/study": postgres_database,
    }
    for old in swaps:
        assert old in text, f"the README no longer says {old!r}: update this test's swaps"
    instance_before = (ROOT / "instance").exists()
    for name in (".venv", "examples", "deploy", "mini-models"):
        (tmp_path / name).symlink_to(ROOT / name)
    script = _script(blocks, swaps)
    # The consent page of the study the Prolific section opened, served by its gunicorn.
    script += (
        f'.venv/bin/python -c "import urllib.request as u; '
        f"print(u.urlopen('http://127.0.0.1:{gunicorn_port}/s/my-study').read().decode())\" > my-study.html\n"
    )
    env = {
        **os.environ,
        "STUDY_APP_INSTANCE": str(tmp_path / "instance"),  # the default SQLite file, out of the checkout
        "COLUMNS": "200",
    }
    env.pop("DATABASE_URL", None)
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the servers it starts go down with it
    )
    try:
        log, _ = shell.communicate(timeout=1800)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, log[-6000:]
    # What a reader would look at after each section.
    assert re.search(r"\d+ of \d+ features kept", log)
    assert (tmp_path / "studies/demo/checksums.txt").exists() and "blinding leaks: 0" in log
    sim = re.search(r"sent=(\d+) stored=(\d+) duplicates=(\d+)", log)
    assert sim and sim[1] == sim[2] and int(sim[1]) > 100 and sim[3] == "0", log[-3000:]
    assert (tmp_path / "instance/study_app.sqlite").exists()  # the SQLite default, where the README says
    assert (tmp_path / "exports/demo.parquet").exists()
    assert "<html" in (tmp_path / "reports/demo/report.html").read_text().lower()
    assert "created admin 'alice'" in log
    assert "https://study.example.org/s/my-study?PROLIFIC_PID={{%PROLIFIC_PID%}}" in log
    assert "server_name study.example.org" in (tmp_path / "study-nginx.conf").read_text()
    assert "I agree, start the study" in (tmp_path / "my-study.html").read_text()
    assert (ROOT / "instance").exists() == instance_before  # nothing written into the checkout


def _help(argv: list[str]) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"}, check=False, timeout=120
    )
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


def _command_help(tool: str, command: str) -> str:
    """``tool command --help``, rendered in this process by the tool's own click command.

    The same text as a subprocess prints (test_packaging runs every console script's
    ``--help`` as one), without a fresh interpreter importing torch for each of the ~40
    commands the docs call: that cost this test minutes of CI time."""
    import click
    import typer
    import typer.main
    from click.testing import CliRunner

    # The module the installed console script runs (pyproject's [project.scripts]).
    (script,) = importlib.metadata.entry_points(group="console_scripts", name=tool)
    module = importlib.import_module(script.module)
    app = getattr(module, "app", None)
    group: click.Command = typer.main.get_command(app) if isinstance(app, typer.Typer) else module.cli
    result = CliRunner().invoke(
        group, [command, "--help"], prog_name=tool, env={"COLUMNS": "250"}, terminal_width=250
    )
    assert result.exit_code == 0, f"{tool} {command} --help: {result.output}"
    return result.output


def test_real_weight_commands_use_options_that_exist() -> None:
    blocks = [b for b in bash_blocks(README.read_text()) if b.startswith(NEEDS_WEIGHTS)]
    assert blocks, "the README lost its real-weights section"
    checked = 0
    for block in blocks:
        for command in commands(block):
            argv = [t for t in shlex.split(command, comments=True) if not re.match(r"^[A-Z_]+=", t)]
            if argv[0] == "export":
                continue
            if argv[0] == "torchrun":
                split = argv.index("-m")
                launcher, argv = argv[:split], [str(BIN / "python"), *argv[split:]]
                help_text = _help([str(BIN / "torchrun"), "--help"])
                for opt in launcher[1:]:
                    assert opt.split("=")[0] in help_text, f"torchrun has no {opt}"
                tool = argv[:4]  # python -m package command
            else:
                exe = BIN / Path(argv[0]).name
                assert exe.exists(), f"{argv[0]} is not installed in .venv"
                argv[0] = str(exe)
                tool = argv[:2]
            help_text = _help([*tool, "--help"])
            for opt in argv[len(tool) :]:
                if opt.startswith("--"):
                    assert re.search(rf"{re.escape(opt)}\b", help_text), f"'{' '.join(tool)}' has no {opt}"
                    checked += 1
    assert checked > 20


TOOLS = ("sae-core", "stimuli-builder", "study-app", "study-analysis")


def _doc_calls(text: str) -> list[tuple[str, str, list[str]]]:
    """(tool, command, --options) of every tool call in the fenced code blocks of a page."""
    calls = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in map(without_comment, commands(block)):
            for segment in re.split(r"\|\||&&|[|;]", line):
                words = segment.replace("[", " ").replace("]", " ").split()
                # A call: the tool by path (.venv/bin/study-app), or as the first word after
                # VAR=value settings; not a unit or user of the same name (systemctl ... study-app).
                first = next((i for i, w in enumerate(words) if not re.match(r"^[A-Z_]+=", w)), 0)
                found = [i for i, w in enumerate(words) if Path(w).name in TOOLS]
                at = next((i for i in found if i == first or Path(words[i]).parent.name == "bin"), None)
                if at is None or at + 1 >= len(words) or words[at + 1].startswith("-"):
                    continue
                options = [w.split("=")[0] for w in words[at + 2 :] if w.startswith("--")]
                calls.append((Path(words[at]).name, words[at + 1], options))
    return calls


def test_tool_calls_in_the_docs_name_commands_and_options_that_exist() -> None:
    """The command blocks of docs/*.md cannot drift from the tools either."""
    options: dict[tuple[str, str], set[str]] = {}
    pages: dict[tuple[str, str], set[str]] = {}
    for page in sorted((ROOT / "docs").glob("*.md")):
        for tool, command, used in _doc_calls(page.read_text()):
            options.setdefault((tool, command), set()).update(used)
            pages.setdefault((tool, command), set()).add(page.name)
    listings = {tool: _help([str(BIN / tool), "--help"]) for tool in {tool for tool, _ in options}}
    wrong = []
    for (tool, command), used in sorted(options.items()):
        where = ", ".join(sorted(pages[(tool, command)]))
        if not re.search(rf"^\W*{re.escape(command)}\s", listings[tool], flags=re.M):
            wrong.append(f"{where}: '{tool} {command}' is not a command")
            continue
        usage = _command_help(tool, command)
        for option in sorted(used):
            if not re.search(rf"{re.escape(option)}\b", usage):
                wrong.append(f"{where}: '{tool} {command}' has no {option}")
    assert not wrong, "\n".join(wrong)
    assert len(options) > 15
