"""Rows of the result table, their printing and their JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of the table: what was measured, against what, the ratio and the verdict.

    ``status`` is ``PASS``/``FAIL`` for a row with a target, ``info`` for a row without one and
    ``SKIP`` when it could not run (``note`` says why).
    """

    key: str
    section: str
    label: str
    value: str
    baseline: str = "-"
    ratio: float | None = None
    target: str = "-"
    status: str = "info"
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(rows: list[Row]) -> str:
    """A plain-text table grouped by section."""
    head = ("row", "measured", "baseline", "ratio", "target", "status")
    body = [
        (
            r.label,
            r.value,
            r.baseline,
            "-" if r.ratio is None else f"{r.ratio:.3f}x",
            r.target,
            r.status + (f" ({r.note})" if r.note else ""),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(head)]
    widths[-1] = len(head[-1])  # the last column is not padded

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(head), line(tuple("-" * w for w in widths))]
    section = None
    for r, cells in zip(rows, body, strict=True):
        if r.section != section:
            section = r.section
            out.append(f"[{section}]")
        out.append(line(cells))
    passed = sum(r.status == "PASS" for r in rows)
    failed = sum(r.status == "FAIL" for r in rows)
    skipped = sum(r.status == "SKIP" for r in rows)
    out.append(f"{passed} PASS, {failed} FAIL, {skipped} SKIP")
    return "\n".join(out)
