"""The pieces of the project's self-contained HTML pages (reports.report_page's
report.html, reports.card's card.html): one style, pictures as inline data: URIs, tables
that scroll sideways on a phone, no script and no network. On a laptop's window (1280 px)
nothing scrolls sideways: text columns wrap (`table(wrap=...)`, anywhere in a long file
name), a cell's note (an interval, a count) goes on its own line under the value, and a
thumbnail's caption wraps within its own grid cell."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:12px;color:#222;
background:#fafafa;line-height:1.4}main{max-width:980px;margin:auto}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}
section{background:#fff;border:1px solid #e4e4e4;border-radius:6px;padding:8px 14px;margin:12px 0}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{flex:1 1 140px;border:1px solid #ddd;border-radius:6px;
padding:8px}.card b{display:block;font-size:1.5em}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.9em;margin:6px 0}th,td{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}
th.wrap,td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:8em;text-align:left}
td .note{display:block}tr.few{color:#999}img.plot{max-width:100%;height:auto}.note{color:#666;font-size:.85em}
.faces{display:grid;grid-template-columns:repeat(auto-fill,minmax(110px,1fr));gap:8px}
figure{margin:0;text-align:center;font-size:.8em;min-width:0}figure img{width:100%;max-width:110px}
figcaption{overflow-wrap:anywhere}
.warn{color:#a40}
"""
THUMBNAIL_SIDE = 96       # pixels of a face thumbnail


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_uri(fig) -> str:
    """A matplotlib figure as an inline PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, dpi=90, bbox_inches="tight", format="png")
    plt.close(fig)
    return png_uri(buf.getvalue())


def thumbnail_uri(pixels: np.ndarray) -> str:
    image = Image.fromarray(np.asarray(pixels, np.uint8)).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE),
                                                                 Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return png_uri(buf.getvalue())


def table(head: list[str], rows: list[list[str]], classes: list[str] | None = None,
          wrap: tuple[int, ...] = ()) -> str:
    """Cells are HTML (escape text before). `wrap`: the columns of free text (a rule, a
    path), which wrap to fit the page; the others stay on one line."""
    classes = classes or [""] * len(rows)

    def cell(tag: str, i: int, value: str) -> str:
        return f"<{tag} class=wrap>{value}</{tag}>" if i in wrap else f"<{tag}>{value}</{tag}>"

    body = "".join(f"<tr class='{c}'>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>"
                   for row, c in zip(rows, classes))
    return ("<div class=scroll><table><thead><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head))
            + f"</tr></thead><tbody>{body}</tbody></table></div>")


def page(title: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: (id, heading, HTML content) per section, in order."""
    body = "".join(f"<section id='{sid}'><h2>{html.escape(heading)}</h2>{content}</section>"
                   for sid, heading, content in sections)
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>{html.escape(title)}</h1>{body}</main></body></html>\n")
