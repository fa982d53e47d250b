"""Your own data in the sidebar: upload a CSV table, pick its label column and held-out share, train on it.

The file is checked by the engine (``csv_data``) and kept in this server's store (``dataset_store``) under its
content hash; the settings (and so the URL) then hold ``task=csv&data=<hash>``. A file the engine refuses shows its
message and changes nothing.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from .. import dataset_store
from ..csv_data import CSV_TASK, header_columns
from ..settings import from_query, spec, to_query
from . import state

_ERROR = "upload_error"
_DONE = "upload_done"


def use_table(content: bytes, label: str | None, heldout: float) -> bool:
    """Keep an uploaded table and make it the current task (a Train press: every run trains on it).

    Args:
        content: The file's bytes.
        label: Its label column (``None``: the last one).
        heldout: Share of the rows held out for test metrics.

    Returns:
        Whether the table was taken; when not, the engine's message is shown by ``upload_panel`` and the settings
        are unchanged.
    """
    try:
        key = dataset_store.put(content, label)
    except ValueError as error:
        st.session_state[_ERROR] = str(error)
        return False
    st.session_state.pop(_ERROR, None)
    old = state.current()
    candidate = dataclasses.replace(old, task=CSV_TASK, data=key, heldout=float(heldout), preset="")
    settings, notes = from_query(to_query(candidate))  # clamped and checked exactly as a URL is
    state.update(settings, notes)
    st.session_state["widgets_for"] = None  # the form shows the new task
    st.session_state[_DONE] = f"Training on your table ({key}): its link works for everyone on this server."
    state.request_retrain()
    return True


def upload_panel() -> None:
    """The sidebar's "Your own data" expander: uploader, label column, held-out share and a button to use them."""
    with st.expander("Your own data (CSV)", expanded=bool(st.session_state.get(_ERROR))):
        upload = st.file_uploader("CSV file", type=["csv", "txt", "tsv"], key="w_upload",
                                  help="Numeric feature columns and a label column (at most 10 classes); the first "
                                       "line names the columns. Standardised with the training rows' statistics. "
                                       "Kept on this server only, under its hash.")
        if upload is not None:
            content = upload.getvalue()
            try:
                columns = header_columns(content)
            except ValueError as error:
                st.error(str(error), icon=":material/error:")
                columns = None
            if columns:
                label = st.selectbox("Label column", columns, index=len(columns) - 1, key="w_upload_label")
                held = spec("heldout")
                heldout = st.slider(held.label, float(held.low), float(held.high), value=state.current().heldout,
                                    step=0.05, key="w_upload_heldout", help=held.help)
                st.button("Train on this table", key="upload_use", on_click=use_table,
                          args=(content, label, heldout), use_container_width=True)
        if upload is not None and st.session_state.get(_ERROR):
            st.error(st.session_state[_ERROR], icon=":material/error:")
        if st.session_state.get(_DONE):
            st.caption(st.session_state.pop(_DONE))
