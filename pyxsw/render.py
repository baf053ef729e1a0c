"""Text for people: the plain tables and cells that `pyxsw ctl` and `pyxsw demo` print."""
from __future__ import annotations


def table(headers, rows):
    """Plain text table: columns as wide as their widest cell, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [bool(rows) and all(is_number(r[i]) for r in rows) for i in range(len(headers))]
    return "\n".join("  ".join(c.rjust(w) if num else c.ljust(w)
                               for c, w, num in zip(r, widths, numeric)).rstrip()
                     for r in cells)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def cell(v):
    """A value as a table shows it: yes/no for a boolean, '-' for nothing."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    return str(v)
