"""sam_viz: a PyTorch engine for visualising sharpness-aware optimizers."""
