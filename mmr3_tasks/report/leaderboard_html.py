"""The leaderboard as one self-contained HTML page: the sortable table, the figures, the inconsistency browser.

Everything is inline: the CSS, the script that sorts the table, the figures as base64 PNGs and the
browser's thumbnails. The page loads nothing, so it can be opened from disk, mailed or published as
one file. Sorting: a click on a header sorts the rows by that column, best first (numbers
descending, or ascending where lower is better; text A-Z), empty cells always last; a second click
reverses the order.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

from mmr3_tasks.report.leaderboard import Board, Column, cell_text

TITLE = "MM-R³ leaderboard"


@dataclass(frozen=True)
class PageFigure:
    name: str  # a file name: what `--plots` writes it as
    caption: str
    png: bytes


def figure_png(fig, dpi: int = 110) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.mmr3-notes li { color: #555; }
.mmr3-table-wrap { overflow-x: auto; }
table.mmr3-leaderboard { border-collapse: collapse; font-size: 13px; }
.mmr3-leaderboard th, .mmr3-leaderboard td { border: 1px solid #ddd; padding: 4px 6px; }
.mmr3-leaderboard thead th { background: #f3f3f3; cursor: pointer; user-select: none; white-space: nowrap; }
.mmr3-leaderboard thead th[aria-sort="ascending"]::after { content: " ▲"; }
.mmr3-leaderboard thead th[aria-sort="descending"]::after { content: " ▼"; }
.mmr3-leaderboard td.mmr3-num { text-align: right; font-variant-numeric: tabular-nums; }
.mmr3-leaderboard td.mmr3-empty { background: #fafafa; }
.mmr3-leaderboard .mmr3-ci { display: block; color: #777; font-size: 85%; }
.mmr3-leaderboard th.mmr3-group-mmr3 { background: #e8eef8; }
figure.mmr3-figure img { max-width: 100%; }
details.mmr3-run-browser { margin: 1em 0; }
details.mmr3-run-browser > summary { font-weight: 600; cursor: pointer; }
"""

# The sorter. Each cell's data-value holds its raw value ("" for an empty cell); each header says
# its type and its first direction (data-first), so the page needs no knowledge of the columns.
SCRIPT = """
(function () {
  const table = document.getElementById("mmr3-leaderboard");
  const headers = Array.from(table.tHead.rows[0].cells);
  function value(row, index, numeric) {
    const raw = row.cells[index].dataset.value;
    if (raw === undefined || raw === "") return null;
    return numeric ? parseFloat(raw) : raw.toLocaleLowerCase();
  }
  function sortBy(index) {
    const th = headers[index];
    const numeric = th.dataset.type === "number";
    const now = th.getAttribute("aria-sort");
    const dir = now === "none" ? th.dataset.first : (now === "ascending" ? "descending" : "ascending");
    headers.forEach(h => h.setAttribute("aria-sort", "none"));
    th.setAttribute("aria-sort", dir);
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const full = rows.filter(r => value(r, index, numeric) !== null);
    const empty = rows.filter(r => value(r, index, numeric) === null);
    const sign = dir === "ascending" ? 1 : -1;
    full.sort((a, b) => {
      const x = value(a, index, numeric), y = value(b, index, numeric);
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    });
    full.concat(empty).forEach(r => body.appendChild(r));
  }
  headers.forEach((th, index) => {
    th.addEventListener("click", () => sortBy(index));
    th.addEventListener("keydown", e => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(index); }
    });
  });
})();
"""


def _first_direction(column: Column) -> str:
    return "descending" if column.numeric and column.higher_is_better is not False else "ascending"


def _header(column: Column, board: Board) -> str:
    sort = "none"
    if board.sorted_by and board.sorted_by[0] == column.key:
        sort = "descending" if board.sorted_by[1] else "ascending"
    arrow = {True: " ↑", False: " ↓"}.get(column.higher_is_better, "") if column.numeric else ""
    group = " mmr3-group-mmr3" if "/" in column.key else ""
    return (
        f'<th class="mmr3-col{group}" data-key="{_e(column.key)}" data-type="{"number" if column.numeric else "text"}" '
        f'data-first="{_first_direction(column)}" aria-sort="{sort}" tabindex="0" title="{_e(column.about)}">'
        f"{_e(column.header)}{arrow}</th>"
    )


def _cell(column: Column, row) -> str:
    value = row.values.get(column.key)
    text = cell_text(column, value)
    raw = "" if value is None else repr(float(value)) if column.numeric else str(value)
    classes = ["mmr3-num"] if column.numeric else []
    if text == "":
        classes.append("mmr3-empty")
    extra = ""
    interval = row.ci95.get(column.key)
    if interval and text:
        extra = f'<span class="mmr3-ci">[{interval[0]:.1f}, {interval[1]:.1f}]</span>'
    elif column.key in row.stderr and text:
        extra = f'<span class="mmr3-ci">± {row.stderr[column.key]:.4g}</span>'
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f'<td{cls} data-key="{_e(column.key)}" data-value="{_e(raw)}">{_e(text)}{extra}</td>'


def render_html(board: Board, figures: list[PageFigure], browsers: list[tuple[str, str]]) -> str:
    """The page: `board` as a sortable table, `figures` inline, and one browser section per (label, html)."""
    head = "".join(_header(c, board) for c in board.columns)
    body = []
    for row in board.rows:
        cells = "".join(_cell(c, row) for c in board.columns)
        body.append(f'<tr data-run="{_e(row.values["run"])}">{cells}</tr>')
    notes = "".join(f"<li>{_e(n)}</li>" for n in board.notes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(TITLE)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(TITLE)}</h1>",
        f"<p>{len(board.rows)} runs. Click a column header to sort by it; click again to reverse. "
        "Under an MM-R³ score: its 95% interval; under another task's: lmms-eval's standard error.</p>",
        f'<ul class="mmr3-notes">{notes}</ul>',
        '<div class="mmr3-table-wrap"><table id="mmr3-leaderboard" class="mmr3-leaderboard">',
        f"<thead><tr>{head}</tr></thead>",
        f"<tbody>{''.join(body)}</tbody>",
        "</table></div>",
    ]
    for fig in figures:
        data = base64.b64encode(fig.png).decode("ascii")
        parts.append(
            f'<figure class="mmr3-figure" data-name="{_e(fig.name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{_e(fig.caption)}"><figcaption>{_e(fig.caption)}</figcaption></figure>'
        )
    if browsers:
        parts.append('<h2 id="inconsistency-browser">Inconsistency browser</h2>')
        parts.append(
            "<p>Per run and task, the groups where the model disagreed with itself most, each variant side by "
            "side (the paper's Table 7, for this run).</p>"
        )
        for label, section in browsers:
            parts.append(
                f'<details class="mmr3-run-browser" data-run="{_e(label)}" open><summary>{_e(label)}</summary>'
                f"{section}</details>"
            )
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
