"""Forms and API posts behind HTTPS: what a browser sends is accepted, what another site sends is not.

Behind the TLS nginx site (TRUSTED_PROXIES=1, X-Forwarded-Proto: https) every POST was a
400 "The referrer header is missing" (issue 31.1): Flask-WTF's strict referrer check,
while the pages' own Referrer-Policy kept browsers from sending one.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from artifact_schemas import AnswerKey

from .conftest import csrf_of

HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


@pytest.fixture
def behind_tls(study_app: tuple[Flask, AnswerKey]) -> Any:
    app, _ = study_app
    app.config["TRUSTED_PROXIES"] = 1
    client = app.test_client()
    page = client.get("/s/pilot", headers=HTTPS)
    return client, csrf_of(page.get_data(as_text=True)), page


def _consent(client: Any, token: str, **headers: str) -> Any:
    return client.post(
        "/s/pilot/consent", data={"csrf_token": token, "choice": "accept"}, headers={**HTTPS, **headers}
    )


def test_browser_post_over_https_without_referer_is_accepted(behind_tls: Any) -> None:
    client, token, _ = behind_tls
    # What Chromium sends for the consent form: Origin and Fetch Metadata, no Referer.
    response = _consent(client, token, Origin="https://localhost", **{"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 302 and response.location.endswith("/s/pilot/go")


def test_older_browser_is_judged_by_its_origin(behind_tls: Any) -> None:
    client, token, _ = behind_tls
    assert _consent(client, token, Origin="https://localhost:443").status_code == 302


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://other.localhost"},
        {"Origin": "https://evil.example"},  # a browser without Fetch Metadata
        {"Origin": "null"},  # a sandboxed frame elsewhere
        {"Origin": "https://localhost:8443"},  # another port is another origin
    ],
)
def test_post_from_another_site_is_refused_with_a_token(behind_tls: Any, headers: dict[str, str]) -> None:
    client, token, _ = behind_tls
    response = _consent(client, token, **headers)
    assert response.status_code == 403 and "another website" in response.get_data(as_text=True)
    api = client.post(
        "/api/s/pilot/event", json={"kind": "x"}, headers={**HTTPS, **headers, "X-CSRFToken": token}
    )
    assert api.status_code == 403 and "another site" in api.get_json()["error"]


def test_token_is_still_required(behind_tls: Any) -> None:
    client, _, _ = behind_tls
    response = _consent(client, "forged", Origin="https://localhost", **{"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 400


def test_pages_let_the_browser_send_its_origin_to_us_only(behind_tls: Any) -> None:
    # "no-referrer" made browsers send "Origin: null"; "same-origin" sends nothing to others.
    _, _, page = behind_tls
    assert page.headers["Referrer-Policy"] == "same-origin"
