"""Alembic environment: runs on the connection study_app.db.upgrade() hands in.

From a shell, ``study-app init-db`` is the way to migrate (it sets the connection
from the app's DATABASE_URL); this file never opens a connection of its own.
"""

from __future__ import annotations

from alembic import context

from study_app import models  # noqa: F401  (registers the tables on the metadata)
from study_app.db import db

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'study-app init-db' (study_app.db.upgrade)")
# Autogenerate writes batch operations (SQLite cannot ALTER most things), but a batch
# operation that rebuilds a table drops the old one, and with foreign keys on, SQLite
# cascades that drop to the children: never rebuild study, study_session or trial this
# way. Add and drop columns in place (op.add_column / op.drop_column), as 0003 does;
# tests/deploy/test_backup_migrations.py downgrades and upgrades a filled database.
context.configure(connection=connection, target_metadata=db.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
