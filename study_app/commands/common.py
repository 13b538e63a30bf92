"""What the ``study-app`` commands share."""

from __future__ import annotations

import click
from sqlalchemy import select

from study_app.db import db
from study_app.models import Study


def get_study_or_fail(slug: str) -> Study:
    """The imported study ``slug``, or a usage error listing the studies there are."""
    study = db.session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        known = ", ".join(db.session.scalars(select(Study.slug))) or "none"
        raise click.BadParameter(f"no study '{slug}' (imported studies: {known})", param_hint="STUDY")
    return study
