"""What the CLI prints: JSON when asked, rich tables otherwise, errors as one line.

Everything written here has already been redacted by the engine (integration
configs, recorded requests); this module never sees a secret in clear.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Styles for delivery states, in tables and the demo's progress.
STATE_STYLES = {
    "pending": "yellow",
    "sending": "cyan",
    "delivered": "green",
    "not_integrated": "bold red",
}


def console(*, stderr: bool = False) -> Console:
    """A rich console for the current output stream.

    Read at call time, so a test runner's replaced ``sys.stdout`` is honoured.
    When the output is not a terminal (a pipe, a test) and ``COLUMNS`` is not
    set, tables get 120 columns instead of rich's 80: they go to logs, not to
    a narrow window.
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and not os.environ.get("COLUMNS"):
        width = 120
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on standard output (dates as ISO 8601 text)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
    flex: Collection[str] = (),
) -> None:
    """A table of ``rows`` under ``columns``; ``empty`` is printed when there are none.

    Every row stays on one line. Columns named in ``flex`` (a reason, a URL)
    give way when the table is too wide, cut with "…"; the others keep their
    full width. ``--json`` and ``inspect`` show everything whole.
    """
    out = console()
    cells = [[cell if isinstance(cell, Text) else Text(_cell(cell)) for cell in row]
             for row in rows]
    if not cells:
        if title:
            out.print(Text(title, style="italic"))
        out.print(Text(f"({empty})", style="dim"))
        return
    widths = [max([len(name), *(row[i].cell_len for row in cells)])
              for i, name in enumerate(columns)]
    flexible = [i for i, name in enumerate(columns) if name in flex]
    # Each column costs 3 characters of borders and padding, plus one for the edge.
    room = out.width - 1 - 3 * len(columns) - sum(
        w for i, w in enumerate(widths) if i not in flexible)
    if flexible and sum(widths[i] for i in flexible) > room:
        _share(widths, flexible, max(room, 8 * len(flexible)))
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, width in zip(columns, widths, strict=True):
        table.add_column(name, no_wrap=True, overflow="ellipsis", width=width)
    for row in cells:
        table.add_row(*row)
    out.print(table)


def _share(widths: list[int], flexible: list[int], room: int) -> None:
    """Give the ``flexible`` columns ``room`` characters: narrow ones keep their width,
    the wide ones split the rest evenly."""
    todo = sorted(flexible, key=lambda i: widths[i])
    while todo:
        fair = room // len(todo)
        narrowest = todo[0]
        if widths[narrowest] <= fair:
            room -= widths[narrowest]
            todo.pop(0)
            continue
        for i in todo:
            widths[i] = fair
        widths[todo[-1]] += room - fair * len(todo)
        return


def state_text(state: str) -> Text:
    """A delivery state, coloured."""
    return Text(state, style=STATE_STYLES.get(state, ""))


def short_time(iso: str | None) -> str:
    """An ISO 8601 timestamp as ``YYYY-MM-DD HH:MM`` (UTC), or empty."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def clip(text: str | None, limit: int = 70) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_line(message: str) -> None:
    """Print ``error: MESSAGE`` as one line on standard error."""
    click.echo(f"error: {one_line(message)}", err=True)


def one_line(message: str) -> str:
    """``message`` with its line breaks folded, so an error is always one line."""
    return " ".join(str(message).split()) or "failed"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
