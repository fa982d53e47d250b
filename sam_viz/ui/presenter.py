"""Presenter mode (``?present=1``): no sidebar, projector-sized text, charts across the whole width.

The switch (``sidebar.page_frame``) is on the page itself (the sidebar is hidden in this mode), on every page; the setting is in the URL, so
a teacher's link opens in presenter mode. Figures get their fonts from ``plots.presenter_fonts`` (``common.chart``,
``common.shared_figure``, whose cache key holds the mode).
"""

from __future__ import annotations

import streamlit as st

from ..settings import Settings

# Streamlit's own elements scale with the root font size (rem units); the sidebar and its collapsed-sidebar button
# go, and the main column loses its side padding and width cap; a widget label that no longer fits its column
# wraps instead of ending in "…" (Streamlit's stMarkdownEllipsis). data-testids and classes of Streamlit 1.67.
PRESENTER_CSS = """<style>
html { font-size: 21px !important; }
section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
[data-testid="stSidebarCollapseButton"] { display: none !important; }
[data-testid="stMainBlockContainer"], .block-container {
  max-width: 100% !important; padding-left: 1.2rem !important; padding-right: 1.2rem !important;
}
h1 { font-size: 2.6rem !important; }
.stMarkdownEllipsis, .stMarkdownEllipsis * {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important; max-width: 100%;
}
</style>"""


def presenter_style(settings: Settings) -> None:
    """The mode's page style, while it is on (a style-only ``st.html`` takes no room on the page)."""
    if settings.present:
        st.html(PRESENTER_CSS)
