"""A small client of Prolific's public API (v1) for what a study needs from it (issue 21).

Only the calls this app makes: create and publish a study, list its submissions (paged),
approve, screen out, and bulk bonuses. The token
comes from ``PROLIFIC_TOKEN`` and lives in one header of one object: it is never logged,
stored, put in an error message or in a ``repr`` (tested by searching everything the
tests produce). Prolific asks clients to back off on 429 and retry 5xx; both are retried
with exponential backoff (Retry-After honoured, capped), and a 4xx is one line naming the
call and Prolific's own message.

A call Prolific documents as not idempotent (paying a bulk bonus, screening out) is sent
with ``idempotent=False``: a 429 is still retried (Prolific did not act on it), but a 5xx
or a lost answer is not, because the payment may have gone through; the caller's records
(``study_app.prolific.pay``) decide what happens next.

No SDK: Prolific publishes none for Python, and the handful of calls is smaller than a
dependency (``httpx`` is already the project's HTTP client).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.prolific.com"
PAGE_SIZE = 200
# Prolific's ids (participants' PROLIFIC_PID, STUDY_ID, SESSION_ID = submission id) are
# MongoDB ObjectIds: 24 lowercase hex digits.
_PROLIFIC_ID = re.compile(r"[0-9a-f]{24}")


def is_prolific_id(value: object) -> bool:
    """Whether ``value`` has the form of a Prolific id (24 lowercase hex digits)."""
    return isinstance(value, str) and _PROLIFIC_ID.fullmatch(value) is not None


class ProlificError(Exception):
    """A call to Prolific that failed; the message names the call, never the token.

    ``refused``: Prolific answered 4xx (or the call was not sent), so it did nothing (money
    did not move); otherwise the outcome of a non-idempotent call is unknown. ``status``:
    Prolific's HTTP status, when it answered."""

    def __init__(self, message: str, *, refused: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.refused = refused
        self.status = status


def checked_id(value: str, what: str) -> str:
    """``value`` when it is a Prolific id, else ProlificError (refused: nothing was sent).

    Study and submission ids reach this client from participants' links (STUDY_ID,
    SESSION_ID): ``st1/%2e%2e/x`` or ``st1?x=`` went into API paths (issue 31.4)."""
    if not is_prolific_id(value):
        raise ProlificError(
            f"{what} {str(value)[:80]!r} is not a Prolific id (24 hex digits): not sent to Prolific",
            refused=True,
        )
    return value


def _segment(value: str, what: str) -> str:
    """A checked Prolific id, percent-encoded as one path segment."""
    return quote(checked_id(value, what), safe="")


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

    def request(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        """One call, retried on 429 and (when ``idempotent``) on 5xx and connection errors;
        the JSON body back."""
        call = f"{method} {path}"
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries or not idempotent:
                    raise ProlificError(f"{call}: Prolific did not answer ({type(exc).__name__})") from None
                self._wait(attempt, None, call, type(exc).__name__)
                continue
            if response.status_code == 429 or (response.status_code >= 500 and idempotent):
                if attempt == self.retries:
                    raise ProlificError(f"{call}: HTTP {response.status_code} after {self.retries} retries")
                self._wait(attempt, response.headers.get("Retry-After"), call, f"HTTP {response.status_code}")
                continue
            if response.status_code >= 400:
                # A 4xx: Prolific did nothing. A 5xx of a call not retried: it may have.
                raise ProlificError(
                    f"{call}: HTTP {response.status_code}: {_message(response)}",
                    refused=response.status_code < 500,
                    status=response.status_code,
                )
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
                f"/api/v1/studies/{_segment(study_id, 'study id')}/submissions/",
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
            "POST",
            f"/api/v1/submissions/{_segment(submission_id, 'submission id')}/transition/",
            json={"action": action},
        )

    def create_study(self, body: dict[str, Any]) -> dict[str, Any]:
        """A draft (UNPUBLISHED) study; Prolific's study object back, ``id`` included."""
        return dict(self.request("POST", "/api/v1/studies/", json=body))

    def publish_study(self, study_id: str) -> Any:
        return self.request(
            "POST",
            f"/api/v1/studies/{_segment(study_id, 'study id')}/transition/",
            json={"action": "PUBLISH"},
        )

    def bulk_approve(self, study_id: str, submission_ids: list[str]) -> Any:
        """Approve (and so pay) AWAITING REVIEW submissions; approving twice is refused by
        Prolific, not paid twice."""
        return self.request(
            "POST",
            "/api/v1/submissions/bulk-approve/",
            json={
                "study_id": checked_id(study_id, "study id"),
                "submission_ids": [checked_id(s, "submission id") for s in submission_ids],
            },
        )

    def screen_out(self, study_id: str, submission_ids: list[str], reward: float) -> Any:
        """Pay ACTIVE submissions the fixed screen-out ``reward`` (in the study's currency)."""
        return self.request(
            "POST",
            f"/api/v1/studies/{_segment(study_id, 'study id')}/screen-out-submissions/",
            idempotent=False,
            json={
                "submission_ids": [checked_id(s, "submission id") for s in submission_ids],
                "bonus_per_submission": reward,
            },
        )

    def set_up_bonuses(self, study_id: str, csv_bonuses: str) -> dict[str, Any]:
        """Step one of a bulk bonus (``participant_id,amount`` lines): nothing is paid yet,
        so a lost answer only leaves an unpaid draft on Prolific."""
        return dict(
            self.request(
                "POST",
                "/api/v1/submissions/bonus-payments/",
                json={"study_id": checked_id(study_id, "study id"), "csv_bonuses": csv_bonuses},
            )
        )

    def pay_bonuses(self, bulk_id: str) -> Any:
        """Step two: pay. Prolific documents it as not idempotent: never retried on 5xx."""
        # The bulk id is Prolific's own answer to set_up_bonuses, not a participant's: encoded,
        # not checked against the id format.
        return self.request(
            "POST", f"/api/v1/bulk-bonus-payments/{quote(bulk_id, safe='')}/pay/", idempotent=False
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
