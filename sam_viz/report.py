"""A self-contained HTML report of a view: its figures, its settings and the link that reproduces it."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio

from .plots import describe


def reproduce_link(link: str, base_url: str | None = None) -> str | None:
    """The absolute URL that reproduces a view, or None when only a query string is known.

    ``link`` may already be absolute ("http://…"); a query string ("?steps=30" or "steps=30") is joined to
    ``base_url`` (the app page's address, e.g. "https://host/Loss_surface") as ``base_url + "?" + query``.
    """
    link = str(link)
    if link.startswith(("http://", "https://")):
        return link
    if not base_url:
        return None
    query = link.lstrip("?")
    base = str(base_url).split("?", 1)[0].rstrip("?")
    return base + ("?" + query if query else "")


def html_report(title: str, figures: Sequence[go.Figure], settings: Mapping[str, str], link: str,
                notes: Sequence[str] = (), *, base_url: str | None = None) -> str:
    """One HTML file that opens offline: plotly.js is embedded once, every figure stays interactive.

    Figures are embedded without auto-play: plotly's default plays a figure's frames on load, which (before the
    playback fix, bug B8) erased the loss contour and always starts from step 0. A playback figure opens on its
    final state (whole paths) with its Play, speed and slider controls.

    Args:
        title: the view's name.
        figures: the figures shown, in order.
        settings: the query parameters of the view (what differs from the defaults).
        link: the query string of the view ("?steps=30&…"), or an absolute URL.
        notes: extra sentences (e.g. the plane's explained variance).
        base_url: the app page's address (e.g. "https://host/Loss_surface"); the reproduce link becomes
            ``base_url + "?" + query``. None: the query string is shown with a sentence saying to append it to
            the app's address (a relative link would be dead in a saved file).
    """
    href = reproduce_link(link, base_url)
    if href is not None:
        reproduce = f'<p>Reproduce this view: <a href="{html.escape(href)}">{html.escape(href)}</a></p>'
    else:
        query = "?" + str(link).lstrip("?")
        reproduce = (f"<p>Reproduce this view: append <code>{html.escape(query)}</code> to the address of the "
                     f"app's {html.escape(title)} page (for example <code>http://localhost:8501/"
                     f"{html.escape(title.replace(' ', '_'))}{html.escape(query)}</code>).</p>")
    parts = [f"<h1>{html.escape(title)} · sam-viz</h1>", reproduce]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
    parts.append(f"<h2>Settings</h2><table>{rows or '<tr><td>all defaults</td></tr>'}</table>")
    for i, fig in enumerate(figures):
        parts.append(f"<figure><figcaption>{html.escape(describe(fig))}</figcaption>")
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), include_mathjax=False,
                                 auto_play=False))
        parts.append("</figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 8px}figcaption{color:#333}"
             "code{background:#f3f3f3;padding:1px 4px}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)} · sam-viz</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
