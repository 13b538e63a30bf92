"""A real browser against a real HTTP server."""

from __future__ import annotations

from typing import Any

from flask import Flask

from study_app.db import db
from study_app.models import Study


def test_chromium_loads_the_served_index_page(app: Flask, live_server: Any, page: Any) -> None:
    with app.app_context():
        db.session.add(Study(slug="demo", title="Timbre study", manifest_sha256="0" * 64, status="open"))
        db.session.commit()
    response = page.goto(live_server.url + "/")
    assert response.status == 200
    assert page.title() == "Listening study"
    assert page.locator("li").first.inner_text().startswith("Timbre study")
    # The stylesheet came from our own server (no CDN), and was applied.
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "system-ui" in font
    health = page.request.get(live_server.url + "/api/health")
    assert health.json()["status"] == "ok"
