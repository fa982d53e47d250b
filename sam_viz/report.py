"""A self-contained HTML report of a view: its figures, its settings and the link that reproduces it."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio

from .plots import describe


def html_report(title: str, figures: Sequence[go.Figure], settings: Mapping[str, str], link: str,
                notes: Sequence[str] = ()) -> str:
    """One HTML file that opens offline: plotly.js is embedded once, every figure stays interactive.

    Args:
        title: the view's name.
        figures: the figures shown, in order.
        settings: the query parameters of the view (what differs from the defaults).
        link: a URL (or query string) that reproduces the view in the app.
        notes: extra sentences (e.g. the plane's explained variance).
    """
    parts = [f"<h1>{html.escape(title)} · sam-viz</h1>",
             f'<p>Reproduce this view: <a href="{html.escape(link)}">{html.escape(link)}</a></p>']
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
    parts.append(f"<h2>Settings</h2><table>{rows or '<tr><td>all defaults</td></tr>'}</table>")
    for i, fig in enumerate(figures):
        parts.append(f"<figure><figcaption>{html.escape(describe(fig))}</figcaption>")
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), include_mathjax=False))
        parts.append("</figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 8px}figcaption{color:#555}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)} · sam-viz</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
