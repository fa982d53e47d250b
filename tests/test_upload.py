"""The sidebar's CSV upload (sam_viz.ui.upload) and the pages on an uploaded table, through AppTest.

AppTest cannot drive ``st.file_uploader``, so the handler the upload button calls, ``use_table``, is called by a
small script's button with the bytes a visitor would upload; the pages are then opened on the resulting link."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from sam_viz import dataset_store, landscape
from sam_viz.ui import training

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def _two_moons_csv(rows: int = 120) -> bytes:
    """Two noisy interleaved half circles with a word label: 2-D, so the decision boundary view applies."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0, np.pi, rows)
    k = np.arange(rows) % 2
    x = np.c_[np.cos(t) + k, np.sin(t) * (1 - 2 * k) + 0.5 * k] + rng.normal(0, 0.1, (rows, 2))
    body = "".join(f"{a:.4f},{b:.4f},{'top' if c == 0 else 'bottom'}\n" for (a, b), c in zip(x, k))
    return ("height,weight,side\n" + body).encode()


@pytest.fixture(autouse=True)
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(dataset_store.DATA_DIR_ENV, str(tmp_path / "store"))
    training.clear_caches()
    landscape.clear_caches()
    yield tmp_path / "store"
    training.clear_caches()


def _upload_script(content: bytes, label: str | None, heldout: float) -> None:
    import streamlit as st

    from sam_viz.ui import state, upload

    state.current()
    st.button("use", key="use", on_click=upload.use_table, args=(content, label, heldout))
    if st.session_state.get("upload_error"):
        st.error(st.session_state["upload_error"])
    st.text(f"task={state.current().task} data={state.current().data}")


def _uploaded(content: bytes, label: str | None = "side", heldout: float = 0.25, **query: str) -> AppTest:
    at = AppTest.from_function(_upload_script, args=(content, label, heldout), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    return at.button(key="use").click().run()


def _query(at: AppTest) -> dict[str, str]:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def test_a_good_file_becomes_the_task_and_the_link() -> None:
    at = _uploaded(_two_moons_csv(), heldout=0.3, steps="40")
    key = dataset_store.content_key(_two_moons_csv(), "side")
    assert not at.exception and not at.error
    assert at.text[0].value == f"task=csv data={key}"
    assert _query(at) == {"task": "csv", "data": key, "heldout": "0.3", "steps": "40"}
    assert dataset_store.has(key)


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"PK\x03\x04" + bytes(200), "Excel workbook"),
    (b"a,a,side\n" + b"1,2,x\n3,4,y\n" * 5, "appears more than once"),
    (b"height,side\n" + b"1,x\n" * 20, "single class"),
])
def test_a_bad_file_shows_the_engines_message_and_changes_nothing(store, content: bytes, message: str) -> None:
    at = _uploaded(content, steps="40")
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value
    assert at.text[0].value == "task=moons data="
    assert _query(at) == {"steps": "40"}
    assert not store.exists() or list(store.glob("*.npz")) == []


@pytest.mark.parametrize("page", ["pages/1_Loss_surface.py", "pages/2_Perturbations.py", "pages/3_Hessian.py",
                                  "pages/4_Radius_sensitivity.py", "pages/5_Learn.py"])
def test_every_view_renders_on_an_uploaded_table(page: str) -> None:
    key = dataset_store.put(_two_moons_csv(), "side")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for name, value in {"task": "csv", "data": key, "steps": "30", "res": "11", "sxv": "0.01,0.1", "syv": "0.1,0.3"}.items():
        at.query_params[name] = value
    at.session_state["_sync_wait_s"] = 600.0
    at.run()
    at = at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert not at.warning or all("Link setting changed" not in w.value for w in at.warning)
    assert at.selectbox(key="w_task").value == "csv"
    assert len(at.get("plotly_chart")) >= (0 if page.endswith("Learn.py") else 1)  # Learn has no charts
    # a table has its own rows and no generator noise: those sliders are not offered
    assert not [s for s in at.sidebar.slider if s.label in ("Samples", "Noise")]
    if page.endswith("Loss_surface.py"):  # 2-D inputs: the decision boundary view is there, in the table's words
        spec = next(el.proto.spec for el in at.get("plotly_chart") if '"probability field"' in el.proto.spec)
        assert "bottom (train)" in spec and "top (train)" in spec and "class 0" not in spec
        assert "x₁ (height)" in spec and "x₂ (weight)" in spec and "P(top)" in spec


def test_a_link_to_a_table_this_server_lacks_opens_the_default_task_with_a_note() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["task"] = "csv"
    at.query_params["data"] = "0123456789abcdef"
    at.run()
    assert not at.exception
    assert any("this server does not hold that uploaded data set" in w.value for w in at.warning)
    assert at.selectbox(key="w_task").value == "moons"
