"""Paper-ready copies of the figures: no playback controls, the final state, a white background, and images.

``static_figure`` is pure (a figure in, a new figure out). ``figure_image`` renders through kaleido 1.x, which
drives a local Chromium (Debian's ``/usr/bin/chromium``, found by choreographer); nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from ._common import FONT_SIZE, HEATMAP_TEXT_SIZE, TITLE_FONT_SIZE

FORMATS = ("png", "svg", "pdf")
_INK = "#222222"        # text on the white page
_GRID = "#E5E5E5"
_MIN_CELL_TEXT = 13


def static_figure(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` ready for a paper or slides: the picture a reader should see, without the controls.

    - Playback figures lose their frames, Play/speed buttons and step slider; every animated trace is set to the
      last frame, so trajectories show in full (the final state), not at step 0.
    - The same traces, axes and colours; Plotly's white template with dark text (the app's colours come from
      the theme, which a file does not have), a white page and plot area, light grid lines and axis lines.
    - Projector-sized fonts stay (legend and ticks 14 px); heatmap cell numbers are at least 13 px; the bottom
      margin that held the controls shrinks.
    - The alt text stays in ``layout.meta``; ``uirevision`` is dropped (nothing to keep across reruns).

    Args:
        fig: a figure from this package (any Plotly figure works).

    Returns:
        A new ``go.Figure``; ``fig`` is not changed.

    Raises:
        TypeError: ``fig`` is not a Plotly figure.
    """
    if not isinstance(fig, go.Figure):
        raise TypeError(f"Invalid fig: expected a plotly.graph_objects.Figure, got {type(fig).__name__}")
    out = go.Figure(fig)
    had_controls = bool(out.frames) or bool(out.layout.updatemenus) or bool(out.layout.sliders)
    if out.frames:
        last = out.frames[-1]
        indices = list(last.traces) if last.traces is not None else list(range(len(last.data)))
        for k, update in zip(indices, last.data):
            out.data[k].update(update.to_plotly_json())
    out.frames = ()
    out.layout.updatemenus = ()
    out.layout.sliders = ()
    out.layout.uirevision = None
    out.layout.template = "plotly_white"
    out.update_layout(paper_bgcolor="white", plot_bgcolor="white",
                      font=dict(color=_INK, size=max(FONT_SIZE, out.layout.font.size or 0)),
                      legend=dict(font=dict(color=_INK, size=max(FONT_SIZE, out.layout.legend.font.size or 0)),
                                  bgcolor="rgba(255,255,255,0.85)"),
                      title=dict(font=dict(color=_INK), pad=dict(l=10)))  # off the file's left edge
    axes = dict(showline=True, linecolor=_INK, mirror=True, gridcolor=_GRID, zerolinecolor=_GRID, ticks="outside",
                tickcolor=_INK, tickfont=dict(color=_INK), title=dict(font=dict(color=_INK)))
    out.update_xaxes(**axes)
    out.update_yaxes(**axes)
    out.update_scenes(**{a: dict(backgroundcolor="white", gridcolor=_GRID, tickfont=dict(color=_INK),
                                 title=dict(font=dict(color=_INK))) for a in ("xaxis", "yaxis", "zaxis")})
    for trace in out.data:
        if trace.type == "heatmap" and trace.texttemplate:
            size = trace.textfont.size
            if size is None or size < _MIN_CELL_TEXT:
                trace.textfont.size = HEATMAP_TEXT_SIZE
        if trace.type in ("heatmap", "contour", "surface") and trace.colorbar is not None:
            trace.colorbar.update(tickfont=dict(color=_INK, size=FONT_SIZE),
                                  title=dict(font=dict(color=_INK, size=TITLE_FONT_SIZE)))
    if out.layout.coloraxis.colorscale is not None:
        out.layout.coloraxis.colorbar.update(tickfont=dict(color=_INK, size=FONT_SIZE))
    if had_controls:
        strip = max(0, (out.layout.margin.b or 0) - 72)  # the controls' strip, now empty
        out.layout.margin.b = 72
        if out.layout.height:
            out.layout.height = max(400, out.layout.height - strip)
    return out


def _browser_path() -> str | None:
    """The Chromium kaleido would drive (``BROWSER_PATH``, PATH, the usual install paths); None when absent.

    Only looks: choreographer's lookup never downloads (``kaleido.get_chrome_sync`` would; it is never called).
    """
    try:
        from choreographer.browsers import Chromium
    except ImportError:  # kaleido not installed: the caller reports it
        return None
    return Chromium.find_browser(skip_local=False)


def figure_image(fig: go.Figure, format: str = "png", *, width: int | None = None, height: int | None = None,
                 scale: float = 2.0, static: bool = True) -> bytes:
    """``fig`` as a PNG, SVG or PDF file's bytes, rendered by kaleido 1.x in a local Chromium.

    Takes about 3–5 s (a fresh headless browser per call): meant for an export button or a script, not for
    every rerun; ``figure_images`` renders several with one browser. MathJax is off (no network; the labels are
    Unicode, not TeX).

    Args:
        fig: the figure.
        format: "png", "svg" or "pdf".
        width, height: size in CSS pixels; default the figure's own (``layout.width``/``height``) or 1000 × 640.
        scale: pixel density for PNG (2 = sharp on slides and in print); ignored by the vector formats.
        static: export ``static_figure(fig)`` (no controls, the final state, white page) rather than ``fig``.

    Returns:
        The file's bytes.

    Raises:
        ValueError: an unknown format or a non-positive size or scale.
        RuntimeError: kaleido is missing, or no Chromium is installed (install Debian's: ``apt-get install
            chromium``), or the render failed.
    """
    return figure_images([fig], format, width=width, height=height, scale=scale, static=static)[0]


def figure_images(figures: Sequence[go.Figure], format: str = "png", *, width: int | None = None,
                  height: int | None = None, scale: float = 2.0, static: bool = True) -> list[bytes]:
    """Several figures as image bytes with one browser (about 1–2 s each after a 3 s start): see ``figure_image``.

    Args:
        figures: the figures, in order.
        format, width, height, scale, static: as ``figure_image``, for every figure.

    Returns:
        One ``bytes`` per figure, in order.

    Raises:
        ValueError, RuntimeError: as ``figure_image``.
    """
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"Invalid format: {format!r}; valid: {', '.join(FORMATS)}")
    for name, value in (("width", width), ("height", height), ("scale", scale)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"Invalid {name}: {value!r} (need > 0)")
    figs = [static_figure(f) if static else go.Figure(f) for f in figures]
    try:
        import kaleido
    except ImportError:
        raise RuntimeError("figure_image needs kaleido 1.x: pip install -r requirements.txt") from None
    if _browser_path() is None:
        raise RuntimeError("figure_image needs a Chromium for kaleido and found none: install Debian's chromium "
                           "(apt-get install chromium) or set BROWSER_PATH to a Chrome/Chromium executable")
    opts = [{"format": fmt, "width": int(width or f.layout.width or 1000),
             "height": int(height or f.layout.height or 640), "scale": float(scale)} for f in figs]

    async def render() -> list[bytes]:
        async with kaleido.Kaleido(n=1, mathjax=False) as k:
            return [bytes(await k.calc_fig(f, opts=o)) for f, o in zip(figs, opts)]

    result: dict[str, Any] = {}

    def run() -> None:  # a thread of its own: the caller may already run an event loop (Streamlit, Jupyter)
        try:
            result["images"] = asyncio.run(render())
        except Exception as exc:  # noqa: BLE001 - any error of kaleido or choreographer goes back to the caller
            result["error"] = exc

    thread = threading.Thread(target=run, name="sam-viz-kaleido", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise RuntimeError(f"kaleido could not render the figure(s) as {fmt}: {result['error']}") from result["error"]
    return result["images"]
