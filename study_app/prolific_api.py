"""A small client of Prolific's public API (v1) for what a study needs from it (issue 21).

Only the calls this app makes: a study's submissions (paged), and transitions. The token
comes from ``PROLIFIC_TOKEN`` and lives in one header of one object: it is never logged,
stored, put in an error message or in a ``repr`` (tested by searching everything the
tests produce). Prolific asks clients to back off on 429 and retry 5xx; both are retried
with exponential backoff (Retry-After honoured, capped), and a 4xx is one line naming the
call and Prolific's own message.

No SDK: Prolific publishes none for Python, and the handful of calls is smaller than a
dependency (``httpx`` is already the project's HTTP client).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.prolific.com"
PAGE_SIZE = 200


class ProlificError(Exception):
    """A call to Prolific that failed; the message names the call, never the token."""


class ProlificClient:
    """``ProlificClient.from_env()``: the token from PROLIFIC_TOKEN, the address from
    PROLIFIC_API_URL (for tests and Prolific's sandbox; default the real API)."""

    def __init__(
        self,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        retries: int = 5,
        backoff_s: float = 1.0,
        max_wait_s: float = 30.0,
        timeout_s: float = 30.0,
    ) -> None:
        if not token:
            raise ProlificError("PROLIFIC_TOKEN is not set: create an API token in Prolific's settings")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Token {token}", "User-Agent": "music-concepts study-app"},
            timeout=timeout_s,
        )
        self.retries, self.backoff_s, self.max_wait_s = retries, backoff_s, max_wait_s

    @classmethod
    def from_env(cls) -> ProlificClient:
        return cls(os.environ.get("PROLIFIC_TOKEN", ""), os.environ.get("PROLIFIC_API_URL", DEFAULT_BASE_URL))

    def __repr__(self) -> str:  # never the headers
        return f"ProlificClient({self._http.base_url})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProlificClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call, retried on 429/5xx and on connection errors; the JSON body back."""
        call = f"{method} {path}"
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ProlificError(f"{call}: Prolific did not answer ({type(exc).__name__})") from None
                self._wait(attempt, None, call, type(exc).__name__)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == self.retries:
                    raise ProlificError(f"{call}: HTTP {response.status_code} after {self.retries} retries")
                self._wait(attempt, response.headers.get("Retry-After"), call, f"HTTP {response.status_code}")
                continue
            if response.status_code >= 400:
                raise ProlificError(f"{call}: HTTP {response.status_code}: {_message(response)}")
            return response.json() if response.content else None
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, retry_after: str | None, call: str, why: str) -> None:
        wait = self.backoff_s * 2**attempt
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date: keep the backoff
                wait = float(retry_after)
        wait = min(max(wait, 0.0), self.max_wait_s)
        log.info("%s: %s, retrying in %.1f s", call, why, wait)
        time.sleep(wait)

    # -- the calls ----------------------------------------------------------------------

    def submissions(self, study_id: str) -> Iterator[dict[str, Any]]:
        """Every submission of a Prolific study (id, participant_id, status, ...)."""
        offset = 0
        while True:
            page = self.request(
                "GET",
                f"/api/v1/studies/{study_id}/submissions/",
                params={"limit": PAGE_SIZE, "offset": offset},
            )
            results = list(page.get("results", []))
            yield from results
            offset += len(results)
            total = (page.get("meta") or {}).get("count")
            if not results or (total is not None and offset >= int(total)):
                return

    def transition_submission(self, submission_id: str, action: str) -> Any:
        """``action``: APPROVE or REJECT (Prolific's transitions of a completed submission)."""
        return self.request(
            "POST", f"/api/v1/submissions/{submission_id}/transition/", json={"action": action}
        )


def _message(response: httpx.Response) -> str:
    """Prolific's error text: ``{"error": {"title", "detail"}}`` or ``{"detail"}``; else the status."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    error = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        return str(error)[:200]
    parts = [str(error[k]) for k in ("title", "detail") if error.get(k)]
    return "; ".join(parts)[:300] or response.reason_phrase or "no message"
