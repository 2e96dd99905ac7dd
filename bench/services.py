"""PostgreSQL and Redis for the production-shaped scenarios: reachability, scratch databases."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from .core import Context

#: The server the PostgreSQL scenarios create scratch databases on.
POSTGRES_URL = os.environ.get(
    "LEADRELAY_BENCH_POSTGRES_URL",
    os.environ.get("LEADRELAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
#: Redis database 14 (the tests use 15): flushed before each repetition.
REDIS_URL = os.environ.get("LEADRELAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def psycopg_url(url: str) -> str:
    """``url`` with the driver SQLAlchemy should use for PostgreSQL."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def postgres_problem(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, or None."""
    try:
        engine = sa.create_engine(psycopg_url(url))
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL is not reachable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    return None


def redis_problem(url: str) -> str | None:
    """Why Redis at ``url`` cannot be used, or None."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis is not reachable ({type(exc).__name__}: {exc})"
    return None


def check_needs(needs: tuple[str, ...], ctx: Context) -> None:
    """Raise :class:`~bench.core.Skip` naming the first missing service."""
    from .core import Skip

    for need in needs:
        problem = (
            postgres_problem(ctx.postgres_url)
            if need == "postgres"
            else redis_problem(ctx.redis_url)
            if need == "redis"
            else None
        )
        if problem:
            raise Skip(problem)


@contextlib.contextmanager
def scratch_postgres(server_url: str, *, template: str | None = None) -> Iterator[str]:
    """A fresh database on the server of ``server_url``, dropped at the end; yields its URL."""
    admin = sa.create_engine(psycopg_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"leadrelay_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        suffix = f' template "{template}"' if template else ""
        conn.execute(sa.text(f'create database "{name}"{suffix}'))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def flush_redis(url: str) -> None:
    """Empty the benchmark's Redis database."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
