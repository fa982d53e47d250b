"""Teaching text for the Learn page: each optimizer's update in LaTeX and the view that shows its effect.

Both are derived from the registry entries (``Variant.latex``, ``Variant.where``), where a new optimizer adds them.
"""

from __future__ import annotations

from .optim import OPTIMIZERS

LATEX: dict[str, str] = {name: v.latex for name, v in OPTIMIZERS.items()}
WHERE: dict[str, str] = {name: v.where for name, v in OPTIMIZERS.items()}
