"""sam-viz home page (the views arrive as pages; see the README)."""

import streamlit as st
import torch

from sam_viz.optim import OPTIMIZERS

st.set_page_config(page_title="sam-viz", page_icon=":material/landscape:", layout="wide")
st.title("sam-viz")
st.write(
    "sam-viz trains small models with SGD, Adam and sharpness-aware optimizers (SAM, ASAM, F-SAM, LightSAM, "
    "AdaSAM, Monge-SAM) and shows how they move: where they probe, how big the perturbation is, and how sharp "
    "the minimum they find is. The engine runs on a GPU when there is one and on the CPU otherwise."
)
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
st.caption(f"Device in use: {device}")
st.subheader("Optimizers")
st.dataframe(
    [{"name": name, "method": info.label, "update": info.update_rule, "status": info.status, "paper": info.paper_url}
     for name, info in OPTIMIZERS.items()],
    hide_index=True,
    column_config={"paper": st.column_config.LinkColumn("paper")},
)
