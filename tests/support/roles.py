"""A temporary LOGIN role that is a member of the runtime role ``claire_user``.

The migrations create ``claire_user`` NOLOGIN when it is missing (a role they create has no
password), and roles are cluster-wide; so each test gets its own login role with a password,
``INHERIT`` (it acts with claire_user's privileges without SET ROLE, as a deployment that adds
LOGIN to claire_user itself would) and nothing granted of its own. Dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

RUNTIME_ROLE = "claire_user"


@contextmanager
def runtime_login(server_url: str, db_url: str, password: str) -> Iterator[str]:
    """Yield ``db_url`` rewritten to log in as a new member of claire_user with ``password``."""
    name = f"paper_rt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {} "
                "IN ROLE {}"
            ).format(sql.Identifier(name), sql.Literal(password), sql.Identifier(RUNTIME_ROLE))
        )
    try:
        yield make_conninfo(db_url, user=name, password=password)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
