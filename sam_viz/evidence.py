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


_FAMILY_SETUP = ("Digits (all 1,797 images: 1,348 train / 449 test), MLP 64-32-32-10 tanh, minibatches of 64 "
                 "(mSAM: 128), 600 steps, lr 0.1 with SGD momentum 0.9 as every method's base, 5 seeds paired across "
                 "methods (same θ₀ and batches); LETS trains on the 80% of the training images its validation split "
                 "leaves.")

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
    "esam_cost": Evidence(
        title="ESAM against SAM and SGD on digits: accuracy and gradient evaluations",
        columns=('method', 'test acc % mean ± std', 'gradient evaluations (batches)', 'per step'),
        rows=(
            ('SGD', '97.24 ± 0.44', '600', '1.00'),
            ('SAM', '97.19 ± 0.33', '1200', '2.00'),
            ('ESAM (β 0.5, γ 0.5)', '97.02 ± 0.52', '896', '1.49'),
        ),
        command="python benchmarks/family_claims.py esam --threads 1",
        source="benchmarks/RESULTS.md",
        setup=_FAMILY_SETUP,
    ),
    "gsam_surrogate_gap": Evidence(
        title="GSAM against SAM on digits: the surrogate gap by quarter of training",
        columns=('method', 'gap, 1st quarter', '2nd', '3rd', '4th quarter', 'test acc %'),
        rows=(
            ('SAM', '0.0601 ± 0.0020', '0.0341 ± 0.0024', '0.0192 ± 0.0019', '0.0130 ± 0.0029', '97.24 ± 0.41'),
            ('GSAM (α 0.4)', '0.0595 ± 0.0018', '0.0346 ± 0.0024', '0.0201 ± 0.0010', '0.0134 ± 0.0018', '97.10 ± 0.58'),
        ),
        command="python benchmarks/family_claims.py gsam --threads 1",
        source="benchmarks/RESULTS.md",
        setup=_FAMILY_SETUP,
    ),
    "ssam_sparsity": Evidence(
        title="SSAM-F on digits: accuracy and final λ_max against sparsity",
        columns=('sparsity', 'test acc % mean ± std', 'final λ_max mean ± std'),
        rows=(
            ('0', '97.19 ± 0.33', '0.37 ± 0.16'),
            ('0.5', '97.15 ± 0.33', '0.38 ± 0.16'),
            ('0.9', '97.19 ± 0.18', '0.60 ± 0.30'),
            ('0.99', '97.37 ± 0.33', '0.61 ± 0.10'),
        ),
        command="python benchmarks/family_claims.py ssam --threads 1",
        source="benchmarks/RESULTS.md",
        setup=_FAMILY_SETUP,
    ),
    "msam_flatness": Evidence(
        title="mSAM on digits: final λ_max and accuracy against the number of micro-batches",
        columns=('m', 'micro-batch size', 'test acc % mean ± std', 'final λ_max mean ± std'),
        rows=(
            ('1', '128', '97.33 ± 0.24', '0.46 ± 0.03'),
            ('2', '64', '97.37 ± 0.17', '0.44 ± 0.03'),
            ('4', '32', '97.42 ± 0.30', '0.40 ± 0.03'),
            ('8', '16', '97.42 ± 0.30', '0.36 ± 0.03'),
            ('16', '8', '97.42 ± 0.30', '0.33 ± 0.03'),
        ),
        command="python benchmarks/family_claims.py mbsam --threads 1",
        source="benchmarks/RESULTS.md",
        setup=_FAMILY_SETUP,
    ),
    "sampa_parallel": Evidence(
        title="SAMPa against SAM and SGD on digits: accuracy and sequential gradient evaluations",
        columns=('method', 'test acc % mean ± std', 'gradient evaluations', 'sequential evaluations'),
        rows=(
            ('SGD', '97.24 ± 0.44', '600', '600'),
            ('SAM', '97.19 ± 0.33', '1200', '1200'),
            ('SAMPa (λ 0.2)', '97.42 ± 0.18', '1200', '600'),
        ),
        command="python benchmarks/family_claims.py sampa --threads 1",
        source="benchmarks/RESULTS.md",
        setup=_FAMILY_SETUP,
    ),
    "lets_learned_radius": Evidence(
        title="LETS on digits: ρ_t from two initial radii, at two step sizes β",
        columns=('β (rho_lr)', 'initial ρ', 'ρ_t step 0', 'step 150', 'step 300', 'step 599', 'test acc %'),
        rows=(
            ('1', '0.01', '0.010 ± 0.000', '0.031 ± 0.040', '0.000 ± 0.000', '0.000 ± 0.000', '97.33 ± 0.24'),
            ('1', '0.5', '0.500 ± 0.000', '0.489 ± 0.009', '0.481 ± 0.007', '0.470 ± 0.011', '96.79 ± 0.57'),
            ('30', '0.01', '0.010 ± 0.000', '0.660 ± 0.324', '0.619 ± 0.331', '0.456 ± 0.274', '96.61 ± 0.22'),
            ('30', '0.5', '0.500 ± 0.000', '0.557 ± 0.194', '0.275 ± 0.337', '0.169 ± 0.212', '96.97 ± 0.33'),
        ),
        command="python benchmarks/family_claims.py lets --threads 1",
        source="benchmarks/RESULTS.md",
        setup=_FAMILY_SETUP,
    ),
    "mup2_width_transfer": Evidence(
        title="μP² width transfer on digits: the best (ρ, η) cell at each width",
        columns=('method', 'width', 'best ρ', 'best η', 'test acc % (mean over seeds)'),
        rows=(
            ('SP SAM', '32', '0.01', '0.3', '95.8'),
            ('SP SAM', '64', '0.03', '0.3', '95.8'),
            ('SP SAM', '128', '0.03', '0.3', '96.2'),
            ('SP SAM', '256', '0.03', '0.3', '96.2'),
            ('μP-naive', '32', '0.03', '0.3', '96.3'),
            ('μP-naive', '64', '0.03', '0.3', '96.8'),
            ('μP-naive', '128', '0.1', '0.3', '96.6'),
            ('μP-naive', '256', '0.1', '0.3', '97.0'),
            ('μP-global', '32', '0.03', '0.3', '96.3'),
            ('μP-global', '64', '0.1', '0.3', '97.0'),
            ('μP-global', '128', '0.1', '0.3', '96.4'),
            ('μP-global', '256', '0.3', '0.3', '96.9'),
            ('μP²', '32', '0.03', '0.3', '96.3'),
            ('μP²', '64', '0.1', '0.3', '96.9'),
            ('μP²', '128', '0.1', '0.3', '96.5'),
            ('μP²', '256', '0.03', '0.3', '96.7'),
        ),
        command="python benchmarks/mup2_transfer.py --threads 1",
        source="benchmarks/RESULTS.md",
        setup=("Digits (1,348 train / 449 test), MLP 64-n-n-10 relu, a 5 × 5 grid of ρ (0.003–0.3) × η (0.03–3), 300 steps, "
                 "batch 64, SGD without momentum, μP base width 32, 3 paired seeds; the best cell is the highest mean "
                 "test accuracy."),
    ),
    "overparam_width": Evidence(
        title="SAM − SGD against width on moons (clean labels)",
        columns=('width', 'params', 'SGD test acc %', 'SAM test acc %', 'Δ test acc (pts)', 'Δ test loss', 'SGD train acc %', 'SAM train acc %'),
        rows=(
            ('4', '42', '92.0', '91.4', '-0.60 ± 1.62', '-0.006 ± 0.011', '93.1', '93.4'),
            ('8', '114', '92.2', '91.6', '-0.60 ± 1.20', '-0.007 ± 0.006', '92.7', '93.3'),
            ('16', '354', '92.2', '92.0', '-0.20 ± 1.60', '-0.010 ± 0.014', '92.7', '93.1'),
            ('32', '1,218', '92.0', '91.4', '-0.60 ± 1.36', '-0.006 ± 0.011', '92.9', '93.1'),
            ('64', '4,482', '92.0', '91.6', '-0.40 ± 1.36', '-0.001 ± 0.006', '93.6', '93.6'),
            ('128', '17,154', '91.2', '91.8', '+0.60 ± 0.49', '-0.011 ± 0.017', '93.5', '93.8'),
            ('256', '67,074', '91.6', '92.0', '+0.40 ± 0.80', '-0.023 ± 0.010', '93.9', '93.3'),
        ),
        command="python benchmarks/overparam.py",
        source="benchmarks/RESULTS.md",
        setup=("Moons (400 samples, input noise 0.25, 25% test), MLP depth 2 tanh, 2,000 steps, batch 32, lr 0.05, "
                 "momentum 0.9, weight decay 5e-4 for both, SAM ρ 0.05, 5 paired seeds; the label-noise table is in "
                 "benchmarks/RESULTS.md."),
    ),
}
