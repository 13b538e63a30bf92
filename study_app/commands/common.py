"""What the ``study-app`` commands share."""

from __future__ import annotations

from dataclasses import MISSING
from typing import Any

import click
from sqlalchemy import select

from artifact_schemas import as_flag
from artifact_schemas.settings import option_help, setting_default
from study_app.db import db
from study_app.models import Study


def get_study_or_fail(slug: str) -> Study:
    """The imported study ``slug``, or a usage error listing the studies there are."""
    study = db.session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        known = ", ".join(db.session.scalars(select(Study.slug))) or "none"
        raise click.BadParameter(f"no study '{slug}' (imported studies: {known})", param_hint="STUDY")
    return study


def field_option(
    config: type, name: str, flag: str | None = None, help: str | None = None, **kwargs: Any
) -> Any:
    """``click.option`` for ``config``'s field ``name``: default, help and the range shown come
    from the field (``artifact_schemas.settings``); the config checks the range. The flag is
    the field's name with dashes unless ``flag`` names another; ``help`` replaces the
    field's docstring where the command needs other words."""
    default = setting_default(config, name)
    text = option_help(config, name, help)
    decls = [flag or as_flag(name)]
    if flag and flag.lstrip("-").replace("-", "_") != name:
        decls.append(name)  # the parameter keeps the field's name
    if default is MISSING or default is None:
        return click.option(*decls, help=text, **kwargs)
    if isinstance(default, bool):
        return click.option(*decls, is_flag=True, default=default, help=text, **kwargs)
    return click.option(*decls, default=default, show_default=True, help=text, **kwargs)
