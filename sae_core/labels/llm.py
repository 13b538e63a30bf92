"""Multimodal-LM labeler: sends a feature's example clips and a prompt, parses a short label.

Speaks the Gemini ``generateContent`` protocol (``POST {base}/models/{model}:generateContent``
with inline base64 audio parts; the answer is in ``candidates[0].content.parts[*].text``).
Only active with an API key. Requests time out, are retried with exponential backoff on
timeouts, connection errors, 429 and 5xx, and answers are cached on disk under a key made
of the model, the prompt and the clips' content hashes, so a rerun costs no requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from artifact_schemas import write_text_atomic

log = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "These audio clips are the moments where one internal feature of a music generator is most "
    "active. What do they have in common musically? Answer with two lines:\n"
    "Label: <at most five words>\nDescription: <one sentence>"
)
_MIME = {".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mp3", ".ogg": "audio/ogg"}


class LLMError(RuntimeError):
    """The service could not give a usable answer (after retries); the message says why."""


@dataclass
class LLMConfig:
    api_key: str
    model: str = "gemini-2.5-flash"
    base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 1.0
    """First retry waits this long; each further retry doubles it."""
    prompt: str = DEFAULT_PROMPT
    max_clips: int = 5
    cache_dir: Path | None = None


def parse_answer(text: str) -> tuple[str, str]:
    """(label, description) from 'Label: ...' / 'Description: ...' lines (first line as fallback)."""
    label = re.search(r"^\s*label\s*:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE)
    description = re.search(r"^\s*description\s*:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    chosen = (label.group(1) if label else first).strip().strip('."')
    if not chosen:
        raise LLMError(f"the answer holds no label: {text[:200]!r}")
    return chosen, (description.group(1).strip() if description else "")


class LLMLabeler:
    def __init__(self, config: LLMConfig, sleep: Callable[[float], None] = time.sleep) -> None:

        self.config = config
        self._sleep = sleep
        self._client = httpx.Client(timeout=config.timeout_s)
        self.requests_sent = 0

    def _cache_path(self, clips: Sequence[Path]) -> Path | None:
        if self.config.cache_dir is None:
            return None
        digest = hashlib.sha256(f"{self.config.model}\0{self.config.prompt}".encode())
        for clip in clips:
            digest.update(hashlib.sha256(clip.read_bytes()).digest())
        return self.config.cache_dir / f"{digest.hexdigest()}.json"

    def describe(self, clips: Sequence[Path]) -> tuple[str, str]:
        """(label, description) for a feature's clips: from the cache, or one (retried) request."""
        clips = list(clips)[: self.config.max_clips]
        cache = self._cache_path(clips)
        if cache is not None and cache.is_file():
            cached = json.loads(cache.read_text())
            return str(cached["label"]), str(cached["description"])
        text = self._request(clips)
        label, description = parse_answer(text)
        if cache is not None:
            write_text_atomic(cache, json.dumps({"label": label, "description": description, "raw": text}))
        return label, description

    def _request(self, clips: Sequence[Path]) -> str:

        parts: list[dict[str, Any]] = [{"text": self.config.prompt}]
        for clip in clips:
            mime = _MIME.get(clip.suffix.lower(), "application/octet-stream")
            parts.append(
                {"inline_data": {"mime_type": mime, "data": base64.b64encode(clip.read_bytes()).decode()}}
            )
        url = f"{self.config.base_url.rstrip('/')}/models/{self.config.model}:generateContent"
        body = {"contents": [{"role": "user", "parts": parts}]}
        wait = self.config.backoff_s
        last = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                self._sleep(wait)
                wait *= 2
            self.requests_sent += 1
            try:
                response = self._client.post(url, json=body, headers={"x-goog-api-key": self.config.api_key})
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                log.warning("LLM request %d failed (%s); retrying", attempt + 1, last)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                log.warning("LLM request %d got %s; retrying", attempt + 1, last)
                continue
            if response.status_code != 200:
                raise LLMError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
            try:
                candidate = response.json()["candidates"][0]["content"]["parts"]
                return "".join(p.get("text", "") for p in candidate)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise LLMError(f"{url}: unexpected answer {response.text[:300]!r}") from exc
        raise LLMError(f"{url}: no answer after {self.config.retries + 1} attempts (last: {last})")

    def label_features(self, examples: pd.DataFrame, root: Path) -> pd.DataFrame:
        """One label per feature, confidence left empty (the model gives none)."""
        rows = []
        for (layer, feature), group in examples.groupby(["layer", "feature_id"]):
            clips = [root / p for p in group.sort_values("rank")["path"]]
            label, description = self.describe(clips)
            rows.append(
                {
                    "feature_id": feature,
                    "layer": layer,
                    "labeler": "llm",
                    "label": label,
                    "confidence": None,
                    "clap_score": None,
                    "description": description,
                }
            )
        return pd.DataFrame(rows)
