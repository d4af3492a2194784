"""Terminal tables that fit the width they are printed at: the least useful columns are dropped first, text
columns wrap, and ids, states and figures are never cut (a job id must stay whole to be copied)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

T = TypeVar("T")


@dataclass(frozen=True)
class Column(Generic[T]):
    header: str
    cell: Callable[[T], str]
    drop: int = 0  # 0: always shown; otherwise dropped when the table is too wide, highest number first
    whole: bool = False  # ids, states, figures: never wrapped
    justify: Literal["left", "right"] = "left"
    min_width: int | None = None


GAP = 2  # between two columns: the separator and the collapsed padding


def fitted(title: str, columns: Sequence[Column[T]], items: Sequence[T], *, width: int, **options: Any) -> Table:
    """The table with as many columns as fit `width`, each at its narrowest: whole columns as wide as their widest
    cell, the others as their longest word (or `min_width`)."""
    shown = list(columns)
    cells = {c.header: [_plain(c.cell(item)) for item in items] for c in columns}
    while True:
        droppable = [c for c in shown if c.drop]
        if not droppable or narrowest(shown, cells) <= width:
            return _table(title, shown, items, **options)
        shown.remove(max(droppable, key=lambda c: c.drop))


def narrowest(columns: Sequence[Column[Any]], cells: dict[str, list[str]]) -> int:
    widths = [_narrowest(c, cells[c.header]) for c in columns]
    return sum(widths) + GAP * (len(widths) - 1)


def _narrowest(column: Column[Any], cells: list[str]) -> int:
    texts = [column.header, *cells]
    if column.whole:
        return max(cell_len(text) for text in texts)
    longest_word = max((cell_len(word) for text in texts for word in text.split()), default=1)
    return max(longest_word, column.min_width or 0)


def _plain(markup: str) -> str:
    return Text.from_markup(markup).plain


def _table(title: str, columns: Sequence[Column[T]], items: Sequence[T], **options: Any) -> Table:
    # SIMPLE_HEAD: no vertical rules, so a column costs its padding alone and a copied id has no │ beside it.
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True,
        **options,
    )
    for c in columns:
        # fold, never an ellipsis: what does not fit goes on the next line, whole.
        table.add_column(c.header, justify=c.justify, no_wrap=c.whole, overflow="fold", min_width=c.min_width)
    for item in items:
        table.add_row(*(c.cell(item) for c in columns))
    return table
