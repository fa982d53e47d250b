"""Measured results that presets quote, kept as data so the app can show the table instead of naming a file.

Each table is copied from the benchmark output it names (``source``, produced by ``command``); a test parses that
file and checks the copy, so the numbers the app shows cannot drift from the measured ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    """A results table behind a preset's claim.

    Attributes:
        title: one line naming what was measured.
        columns: the table's header, as in ``source``.
        rows: one tuple of cell texts per row, as in ``source`` (percentages as printed there).
        command: the command that produced the table (run from the repository root).
        source: the file holding the full output.
        setup: one sentence on the setup (data, model, steps, seeds).
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    command: str
    source: str
    setup: str


EVIDENCE: dict[str, Evidence] = {
    "lightsam_claim_digits": Evidence(
        title="LightSAM's robustness claim on digits: the full reproduction",
        columns=("method", "grid (x × y)", "test acc mean ± std (9 cells × seeds)", "std over cells", "best cell",
                 "cells within 1 pt of best", "diverged", "median λ_max"),
        rows=(
            ("SGD", "momentum (0.0, 0.5, 0.9) × lr (0.01, 0.1, 1.0)", "85.2 ± 26.9", "26.9", "97.4", "5/9", "0/27", "2.2"),
            ("SAM", "rho (0.01, 0.05, 0.2) × lr (0.01, 0.1, 1.0)", "68.2 ± 41.1", "41.1", "97.6", "6/9", "0/27", "0.2"),
            ("AdaSAM", "rho (0.01, 0.05, 0.2) × lr (0.0001, 0.001, 0.01)", "95.2 ± 2.9", "2.8", "97.7", "6/9", "0/27",
             "1.2"),
            ("LightSAM-I", "rho (0.01, 0.1, 1.0) × lr (0.01, 0.1, 1.0)", "72.8 ± 26.9", "26.6", "97.0", "3/9", "0/27",
             "2.7"),
            ("LightSAM-II", "rho (0.01, 0.1, 1.0) × lr (0.01, 0.1, 1.0)", "48.8 ± 42.7", "42.7", "97.5", "2/9", "0/27",
             "2.9"),
            ("LightSAM-III", "rho (0.01, 0.1, 1.0) × lr (0.0001, 0.001, 0.01)", "38.9 ± 39.2", "39.2", "96.7", "2/9",
             "0/27", "2.3"),
            ("LightSAM-III, bias-corrected", "rho (0.01, 0.1, 1.0) × lr (0.0001, 0.001, 0.01)", "39.1 ± 38.3", "38.3",
             "97.3", "2/9", "0/27", "2.0"),
        ),
        command="python benchmarks/lightsam_claim.py --threads 1",
        source="benchmarks/sweep_results.md",
        setup="Digits (all 1,797 images: 1,348 train / 449 test), MLP 64-32-32-10 tanh, minibatches of 64, 1,500 "
              "steps (~71 epochs), 3 seeds, each method on its own 3 × 3 grid; test accuracy in %, mean ± std over "
              "the 9 cells × 3 seeds. The last row (Adam's bias correction) is not part of the claim.",
    ),
    "fsam_claim_digits": Evidence(
        title="F-SAM against SAM on digits: the full measurement",
        columns=("model", "ρ", "method", "test acc % mean ± std", "F-SAM − SAM (pts, mean ± std over seeds)"),
        rows=(
            ('mlp', '0.05', 'SAM', '97.51 ± 0.41', ''),
            ('mlp', '0.05', 'F-SAM (paper: σ 1, λ 0.6)', '97.28 ± 0.26', '-0.22 ± 0.24'),
            ('mlp', '0.05', 'F-SAM (app defaults: σ 1, λ 0.9)', '97.37 ± 0.36', '-0.13 ± 0.18'),
            ('mlp', '0.2', 'SAM', '97.64 ± 0.30', ''),
            ('mlp', '0.2', 'F-SAM (paper: σ 1, λ 0.6)', '97.51 ± 0.09', '-0.13 ± 0.33'),
            ('mlp', '0.2', 'F-SAM (app defaults: σ 1, λ 0.9)', '97.55 ± 0.20', '-0.09 ± 0.23'),
            ('cnn', '0.05', 'SAM', '97.15 ± 0.41', ''),
            ('cnn', '0.05', 'F-SAM (paper: σ 1, λ 0.6)', '97.19 ± 0.52', '+0.04 ± 0.22'),
            ('cnn', '0.05', 'F-SAM (app defaults: σ 1, λ 0.9)', '97.15 ± 0.43', '+0.00 ± 0.14'),
            ('cnn', '0.2', 'SAM', '97.19 ± 0.75', ''),
            ('cnn', '0.2', 'F-SAM (paper: σ 1, λ 0.6)', '97.19 ± 0.65', '-0.00 ± 0.37'),
            ('cnn', '0.2', 'F-SAM (app defaults: σ 1, λ 0.9)', '97.46 ± 0.46', '+0.27 ± 0.33'),
        ),
        command="python benchmarks/fsam_claim.py --threads 1",
        source="benchmarks/RESULTS.md",
        setup="Digits (1,348 train / 449 test images), minibatches of 64, 800 steps, lr 0.1 with SGD momentum 0.9, "
              "5 seeds paired across methods (same θ₀ and batches); one test image is 0.22 points.",
    ),
}
