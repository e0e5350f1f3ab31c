"""What the terminal shows fits the terminal: its width, and text and commands folded to it.

The width is the terminal's (`shutil.get_terminal_size`: the `COLUMNS` variable if set, else the
window the output goes to); output that is not a terminal (a log file, a pipe) gets
`DEFAULT_WIDTH`. Tables fit it by leaving columns out (`search.record.tables.format_table`); text
is folded at spaces (`wrap`); a shell command is folded with `\\` continuations, so it still
pastes whole (`command`). A word longer than the width (a link) is printed whole, on a line of
its own.
"""

from __future__ import annotations

import shutil
import textwrap

DEFAULT_WIDTH = 100  # columns, when the output is not a terminal
MIN_WIDTH = 60  # narrower windows get this width; their lines wrap


def width() -> int:
    """The columns the output has: the terminal's, else `DEFAULT_WIDTH`."""
    return max(shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns, MIN_WIDTH)


def wrap(text: str, columns: int | None = None, indent: str = "    ") -> str:
    """`text` folded at spaces into lines of at most `columns` (the terminal's width), the
    folded ones indented; each of its own lines apart."""
    columns = columns or width()
    folded = (
        textwrap.fill(line, columns, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False) if line else ""
        for line in text.split("\n")
    )
    return "\n".join(folded)


def wrap_parts(parts: list[str], columns: int | None = None, indent: str = "    ", separator: str = " | ") -> str:
    """`parts` joined by `separator` on as few lines as fit `columns`: a line breaks between
    parts first (the next line starting with the separator, indented), and within a part only
    when the part alone is too long."""
    columns = columns or width()
    lines: list[str] = []
    for part in parts:
        joined = f"{lines[-1]}{separator}{part}" if lines else part
        if lines and len(joined) <= columns:
            lines[-1] = joined
        else:
            lead = f"{indent}{separator.lstrip()}" if lines else ""
            lines.extend(wrap(lead + part, columns, indent + "  ").split("\n"))
    return "\n".join(lines)


def command(text: str, columns: int | None = None, indent: str = "    ") -> str:
    """A shell command folded at spaces with `\\` continuations (it still pastes as one
    command), keeping any text before it (e.g. "Open the UI:") on the first line."""
    columns = columns or width()
    lead = text[: len(text) - len(text.lstrip(" "))]
    lines: list[str] = []
    line = ""
    for word in text[len(lead):].split(" "):  # an empty word keeps a double space
        if line and word and len(line) + 1 + len(word) + 2 > columns:
            lines.append(line + " \\")
            line = lead + indent + word
        else:
            line = f"{line} {word}" if line else lead + word
    lines.append(line)
    return "\n".join(lines)
