"""The ``leadrelay`` command: a thin layer of click over :class:`~leadrelay.engine.app.Leadrelay`.

Each module holds one group of verbs (:mod:`.run`, :mod:`.leads`, :mod:`.manage`,
:mod:`.plugins`, :mod:`.static_ips`, :mod:`.keys`, :mod:`.new_connector`, :mod:`.facebook`,
:mod:`.demo`); this one assembles them and owns the exit-code policy: 0 ok,
1 failure, 2 usage error. Every error is one line on standard error
(``error: config.url: Input should be a valid URL…``), never a traceback —
set ``LEADRELAY_DEBUG=1`` to get the traceback of an unexpected error. What the
engine logs while a one-shot verb runs (``submit`` with the broker down) is one
``warning: …`` line per record too; the services (``serve``, ``worker``,
``scheduler``) configure their own log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from leadrelay import __version__

from .output import error_line

__all__ = ["CliFailure", "CliUsageError", "LeadrelayGroup", "main"]

#: Exit codes.
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliFailure(click.ClickException):
    """A failure shown as one ``error: …`` line; exit code 1."""

    exit_code = EXIT_FAILURE

    def show(self, file: Any = None) -> None:
        """Print the one line."""
        error_line(self.format_message())


class CliUsageError(CliFailure):
    """A usage error (bad arguments, bad input, unknown object) shown as one line; exit code 2."""

    exit_code = EXIT_USAGE


class LeadrelayGroup(click.Group):
    """A click group that turns every error into one line and the right exit code.

    Click's own usage errors (unknown option, bad value) keep exit code 2 but
    lose the usage banner: they become ``error: … (see 'leadrelay X --help')``.
    The engine's :class:`~leadrelay.engine.errors.BadInput` (and its
    ``ConfigError`` and ``NotFound``) is a usage error too; any other
    :class:`~leadrelay.engine.errors.LeadrelayError` is a failure (exit 1).
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the top-level arguments, with usage errors on one line."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _usage_failure(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the chosen verb, mapping every error to one line and an exit code."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, CliFailure):
            raise
        except click.UsageError as exc:
            raise _usage_failure(exc) from None
        except click.ClickException:
            raise
        except Exception as exc:
            raise _failure_for(exc) from None


class OneLineLog(logging.Formatter):
    """A log record as one ``warning: …`` line, its exception summed up in its type and
    first line (the whole traceback with ``LEADRELAY_DEBUG=1``)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record on one line."""
        from .output import one_line

        if os.environ.get("LEADRELAY_DEBUG") == "1":
            return super().format(record)
        kind = "warning" if record.levelno < logging.ERROR else "logged error"
        line = f"{kind}: {one_line(record.getMessage())}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            line += f" ({type(exc).__name__}: {one_line(first)})" if first else (
                f" ({type(exc).__name__})")
        return line


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test runner's too)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self, logging.WARNING)
        self.setFormatter(OneLineLog())

    @property
    def stream(self) -> Any:
        """The current standard error."""
        return sys.stderr


def _one_line_logging() -> None:
    """Records logged while no logging is configured (every verb but the services) print
    as one line each, instead of with the whole traceback as Python's last resort does."""
    if not isinstance(logging.lastResort, _Stderr):
        logging.lastResort = _Stderr()


def _usage_failure(exc: click.UsageError) -> click.ClickException:
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc  # a bare group name prints its help; keep that
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return CliUsageError(exc.format_message() + hint)


def _failure_for(exc: Exception) -> CliFailure:
    """The one-line failure for an exception a verb let through."""
    from leadrelay.engine.errors import BadInput, LeadrelayError

    if isinstance(exc, BadInput):
        return CliUsageError(str(exc))
    if isinstance(exc, LeadrelayError):
        return CliFailure(str(exc))
    if os.environ.get("LEADRELAY_DEBUG") == "1":
        raise exc
    return CliFailure(_describe_unexpected(exc))


def _describe_unexpected(exc: Exception) -> str:
    """A short, credential-free line for an error the engine did not classify."""
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        cause = getattr(exc, "orig", None) or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return f"database: {type(cause).__name__}: {first}"
    if isinstance(exc, RedisError):
        return f"broker: {type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}"
    return (f"unexpected {type(exc).__name__}: {exc} "
            "(set LEADRELAY_DEBUG=1 to see the traceback)")


@click.group(
    cls=LeadrelayGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="leadrelay")
def main() -> None:
    """leadrelay delivers leads to CRMs: judged, logged attempt by attempt, retried,
    and replayable when they fail.

    Configuration comes from LEADRELAY_* environment variables (LEADRELAY_HOME,
    LEADRELAY_DATABASE_URL, LEADRELAY_BROKER_URL, ...) and plugins.toml. With none
    set, everything lives in ./.leadrelay (SQLite) with an in-process broker.

    Exit codes: 0 ok, 1 failure, 2 usage error.
    """
    _one_line_logging()


def _register(group: click.Group, commands: Sequence[click.Command]) -> None:
    for command in commands:
        group.add_command(command)


def _assemble() -> None:
    from . import (
        demo,
        digest,
        facebook,
        imports,
        keys,
        leads,
        manage,
        new_connector,
        operate,  # noqa: F401  (adds its verbs to manage's groups)
        plugins,
        run,
        static_ips,
    )
    from . import plans as plan_verbs

    _register(main, [run.serve, run.api, run.worker, run.scheduler, demo.demo,
                     leads.submit, leads.deliveries, leads.inspect, leads.replay,
                     plugins.plugins_command, static_ips.static_ips, keys.secret_key, keys.keys,
                     new_connector.new_connector, digest.digest,
                     manage.accounts, manage.forms, manage.integrations,
                     facebook.facebook, plan_verbs.plans, plan_verbs.audit,
                     imports.import_command, imports.send_command, imports.imports])


_assemble()
