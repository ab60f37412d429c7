"""Alembic migrations of the metadata database.

Configured in code (see :func:`headwater.store.sql.alembic_config`): users never
need an ``alembic.ini``. Each revision id is also listed in
:data:`headwater.store.schema.SCHEMA_REVISIONS`.
"""
