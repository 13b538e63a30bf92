"""The multimodal-LM labeler over real HTTP, against a local server speaking the same protocol."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from artifact_schemas import EXAMPLES, LABELS, load_table, save_table
from sae_core.labels.llm import LLMConfig, LLMError, LLMLabeler, parse_answer

BIN = Path(sys.executable).parent
ANSWER = {
    "candidates": [
        {
            "content": {
                "parts": [{"text": "Label: bright plucked arpeggios\nDescription: Fast, high plucked notes."}]
            }
        }
    ]
}


class FakeGemini:
    """A generateContent endpoint whose behaviour per request follows a script."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, object]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "key": self.headers.get("x-goog-api-key"), "body": body}
                )
                action = server.script.pop(0) if server.script else "ok"
                if action == "slow":
                    time.sleep(1.0)
                    action = "ok"
                status, payload = {
                    "ok": (200, ANSWER),
                    "503": (503, {}),
                    "429": (429, {}),
                    "400": (400, {}),
                    "junk": (200, {"nothing": 1}),
                }[action]
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1beta"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeGemini:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    out = []
    for i in range(3):
        path = tmp_path / f"clip{i}.flac"
        path.write_bytes(bytes([i]) * 100)
        out.append(path)
    return out


def _labeler(server: FakeGemini, tmp_path: Path, waits: list[float], **kw: object) -> LLMLabeler:
    cfg = LLMConfig(
        api_key="secret",
        model="test-model",
        base_url=server.url,
        timeout_s=0.4,
        retries=3,
        backoff_s=0.5,
        cache_dir=tmp_path / "cache",
        **kw,
    )  # type: ignore[arg-type]
    return LLMLabeler(cfg, sleep=waits.append)


def test_request_carries_prompt_clips_and_key(clips: list[Path], tmp_path: Path) -> None:
    with FakeGemini(["ok"]) as server:
        label, description = _labeler(server, tmp_path, []).describe(clips)
    assert (label, description) == ("bright plucked arpeggios", "Fast, high plucked notes.")
    request = server.requests[0]
    assert request["path"] == "/v1beta/models/test-model:generateContent" and request["key"] == "secret"
    parts = request["body"]["contents"][0]["parts"]  # type: ignore[index]
    assert "Label:" in parts[0]["text"]
    assert [base64.b64decode(p["inline_data"]["data"]) for p in parts[1:]] == [c.read_bytes() for c in clips]
    assert all(p["inline_data"]["mime_type"] == "audio/flac" for p in parts[1:])


def test_retries_with_backoff_on_5xx_429_and_timeouts(clips: list[Path], tmp_path: Path) -> None:
    waits: list[float] = []
    with FakeGemini(["503", "429", "slow", "ok"]) as server:
        labeler = _labeler(server, tmp_path, waits)
        assert labeler.describe(clips)[0] == "bright plucked arpeggios"
    assert labeler.requests_sent == 4
    assert waits == [0.5, 1.0, 2.0]


def test_gives_up_after_retries_and_on_client_errors(clips: list[Path], tmp_path: Path) -> None:
    with FakeGemini(["503"] * 10) as server, pytest.raises(LLMError, match="no answer after 4 attempts"):
        _labeler(server, tmp_path, []).describe(clips)
    with FakeGemini(["400"]) as server:
        labeler = _labeler(server, tmp_path, [])
        with pytest.raises(LLMError, match="HTTP 400"):
            labeler.describe(clips)
        assert labeler.requests_sent == 1  # a bad request is not retried
    with FakeGemini(["junk"]) as server, pytest.raises(LLMError, match="unexpected answer"):
        _labeler(server, tmp_path, []).describe(clips)


def test_answers_are_cached_by_clip_content(clips: list[Path], tmp_path: Path) -> None:
    with FakeGemini(["ok"]) as server:
        first = _labeler(server, tmp_path, []).describe(clips)
        again = _labeler(server, tmp_path, [])
        assert again.describe(clips) == first
        assert again.requests_sent == 0 and len(server.requests) == 1
        clips[0].write_bytes(b"changed audio")
        again.describe(clips)
        assert len(server.requests) == 2


def test_parse_answer_variants() -> None:
    assert parse_answer("label: Warm pads.\ndescription: Slow chords") == ("Warm pads", "Slow chords")
    assert parse_answer("Distorted guitar riff\n") == ("Distorted guitar riff", "")
    with pytest.raises(LLMError):
        parse_answer("  \n ")


def test_cli_llm_labeler_over_http(clips: list[Path], tmp_path: Path) -> None:
    features = tmp_path / "features" / "layer_2"
    features.mkdir(parents=True)
    rows = []
    for rank, clip in enumerate(clips, 1):
        (features / clip.name).write_bytes(clip.read_bytes())
        rows.append(
            {
                "feature_id": 4,
                "layer": 2,
                "rank": rank,
                "track_id": "t",
                "start_s": 0.0,
                "end_s": 1.0,
                "peak_time_s": 0.5,
                "peak_activation": 1.0,
                "path": clip.name,
            }
        )
    save_table(pd.DataFrame(rows), features / "examples.parquet", EXAMPLES)
    out = tmp_path / "labels.parquet"
    cmd = [
        str(BIN / "sae-core"),
        "label",
        "--features",
        str(features),
        "--labelers",
        "llm",
        "--out",
        str(out),
    ]
    no_key = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, check=False, env={"PATH": str(BIN)}
    )
    assert no_key.returncode == 2 and "API key" in no_key.stderr
    with FakeGemini(["503", "ok"]) as server:
        result = subprocess.run(
            [*cmd, "--llm-url", server.url, "--llm-model", "test-model"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"PATH": str(BIN), "GEMINI_API_KEY": "k"},
        )
    assert result.returncode == 0, result.stderr
    labels = load_table(out, LABELS)
    assert labels[["feature_id", "labeler", "label"]].values.tolist() == [
        [4, "llm", "bright plucked arpeggios"]
    ]
