"""JSON API for the participant pages and for monitoring."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from study_app.db import db

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/health")
def health() -> tuple[dict[str, Any], int]:
    """Liveness and database reachability, for load balancers and the deploy checks."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return {"status": "error", "database": type(exc).__name__}, 503
    return {"status": "ok", "database": db.engine.dialect.name}, 200
