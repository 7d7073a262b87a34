"""The page itself: escaping, embedded images, tables, notes, the template and the atomic write.

The report is one file a user can mail or attach to an issue: every image is a base64 PNG data URI, the style is
inline, and there is no script and no external resource, so it opens the same offline, in any browser, years later.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; margin: 0.4rem 0; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
p, li { line-height: 1.45; }
nav a { margin-right: 1rem; }
img { max-width: 100%; height: auto; display: block; margin: 0.6rem 0; image-rendering: auto; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.55rem; text-align: right; vertical-align: top; }
th { background: #f4f4f6; }
td.text, th.text { text-align: left; }
td.text:first-child { min-width: 9rem; overflow-wrap: anywhere; }
tr.chosen td { background: #fff3e0; font-weight: 600; }
code, pre { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 0.85rem; }
pre { background: #f6f6f8; padding: 0.6rem 0.8rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.summary { background: #f6f8fc; border: 1px solid #dde3f0; padding: 0.6rem 1rem; border-radius: 6px; }
.absent { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4rem 0.8rem; }
.caption { color: #555; font-size: 0.9rem; }
"""


@dataclass(frozen=True)
class Section:
    """One ``<section>`` of the page: an anchor id, a heading and its already-escaped HTML body."""

    id: str
    title: str
    body: str


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def img(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a data URI (the report must stand alone)."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def absent(text: str) -> str:
    """The standard note for a part the run does not have: the reader must see what is missing, not a blank."""
    return f'<p class="absent">Not available: {esc(text)}</p>'


def para(text: str, cls: str | None = None) -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], text_columns: int = 1, highlight: Iterable[bool] | None = None) -> str:
    """A plain HTML table; the first ``text_columns`` columns are left-aligned text, the rest right-aligned numbers."""
    marks = list(highlight) if highlight is not None else None
    head = "".join(f'<th class="text">{esc(h)}</th>' if i < text_columns else f"<th>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cells = "".join(f'<td class="text">{esc(v)}</td>' if i < text_columns else f"<td>{esc(v)}</td>" for i, v in enumerate(row))
        cls = ' class="chosen"' if marks is not None and r < len(marks) and marks[r] else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, summary: str, sections: Sequence[Section]) -> str:
    nav = " ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    parts = "\n".join(f'<section id="{esc(s.id)}">\n<h2>{esc(s.title)}</h2>\n{s.body}\n</section>' for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{esc(title)}</h1>\n{summary}\n<nav>{nav}</nav>\n{parts}\n</main>\n</body>\n</html>\n"
    )
