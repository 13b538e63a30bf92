"""Pages participants see."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select

from study_app.db import db
from study_app.models import Study

bp = Blueprint("participant", __name__)


@bp.get("/")
def index() -> str:
    """Landing page: which studies this server hosts (participants normally arrive via a link)."""
    studies = db.session.scalars(select(Study).order_by(Study.slug)).all()
    return render_template("index.html", studies=studies)
