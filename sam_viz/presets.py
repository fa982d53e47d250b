"""Presets: settings that reproduce textbook and paper pictures, each with a paragraph on what to look at."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings, from_query


@dataclass(frozen=True)
class Preset:
    """A one-click view.

    Attributes:
        name: URL value (``preset=name``).
        title: gallery title.
        page: the page it opens ("Loss_surface", "Perturbations", "Hessian", "Radius_sensitivity").
        query: the settings that differ from the defaults, as URL parameters.
        explanation: one paragraph: what to look at and why it happens.
    """

    name: str
    title: str
    page: str
    query: dict[str, str]
    explanation: str

    def settings(self) -> Settings:
        settings, notes = from_query({**self.query, "preset": self.name})
        if notes:  # a preset is code: any note is a bug, caught by the tests
            raise ValueError(f"preset {self.name}: {'; '.join(notes)}")
        return settings


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "sharp_vs_flat", "SGD vs SAM: a sharp and a flat minimum", "Loss_surface",
        {"task": "sharp_flat", "n": "64", "noise": "0", "steps": "600", "res": "61",
         "runs": "sgd:lr=0.015,momentum=0;sam:lr=0.015,momentum=0,rho=0.15"},
        "Two minima of almost equal depth: a narrow one near the start and a wide one to the right. Plain gradient "
        "descent rolls into the nearest, sharp well and stays there. SAM evaluates the gradient at the worst point "
        "of a ρ-ball; inside the narrow well that point lies on the steep wall, so the step pushes it out, and it "
        "settles in the flat minimum, where the whole ball is low. The parameters are the plane, so the contour is "
        "the exact loss.",
    ),
    Preset(
        "rho_too_large", "ρ too large: SAM stops learning", "Perturbations",
        {"task": "moons", "steps": "200", "runs": "sam:rho=0.05;sam:rho=3"},
        "The same network trained by SAM with ρ = 0.05 and with ρ = 3. With a small radius the probe θ + e stays "
        "near θ and SAM behaves like a curvature-aware SGD. With a radius larger than the distance to the flat "
        "region the probe lands somewhere unrelated to θ, its gradient says little about θ, and the loss stalls "
        "(watch ‖e‖ against the step and the test accuracy): the picture behind \"SAM falls off a cliff when ρ is "
        "mis-set\".",
    ),
    Preset(
        "fsam_removes_full_gradient", "F-SAM removes the full-gradient component", "Perturbations",
        {"task": "moons", "n": "512", "batch": "128", "steps": "200",
         "runs": "sam:rho=0.1;fsam:rho=0.1,lmbda=0.6"},
        "With minibatches, SAM's perturbation e_t is the normalised minibatch gradient: the full-batch gradient "
        "plus noise. Friendly-SAM subtracts an exponential average of past gradients (an estimate of the full "
        "gradient; λ = 0.6 as in the authors' latest script) before normalising, so more of its e_t is noise. "
        "The chart of cos(e_t, ∇L) shows it: about 0.7 on average for SAM here, about 0.35 for F-SAM; the "
        "decomposition chart splits ‖e_t‖ into the two parts. Li et al. (CVPR 2024) argue that the full-gradient "
        "part hurts generalisation and the noise part is what helps.",
    ),
    Preset(
        "lightsam_parameter_agnostic", "LightSAM is parameter-agnostic (SAM vs LightSAM)", "Radius_sensitivity",
        {"task": "moons", "steps": "100", "act": "relu", "runs": "sam;lightsam1;lightsam2",
         "sxv": "0.01,0.1,1,10", "syv": "0.01,0.1,1,10"},
        "Final test accuracy over a grid of radius ρ and learning rate η, one heatmap per method on one colour "
        "scale. SAM with momentum SGD works in a band: at η = 10, and at η = 1 with ρ ≥ 1, it collapses to chance "
        "(0.5). LightSAM's AdaGrad-style accumulators shrink the radius (ρ/√u_t) and the step (η/√v_t) on their "
        "own, so LightSAM-I still learns at η = 10 and degrades more gradually. It is not flat, though: with a "
        "small η it learns slowly and a very large ρ hurts it too. Over the 16 cells its spread is smaller (about "
        "0.15 against 0.20): a milder version of Cheng et al.'s (2025) claim that LightSAM converges for any ρ and η.",
    ),
    Preset(
        "adam_vs_lightsam3", "Adam vs LightSAM-III", "Loss_surface",
        {"task": "himmelblau", "n": "64", "noise": "0.5", "batch": "16", "steps": "400", "res": "61",
         "runs": "adam:lr=0.05;lightsam3:lr=0.05,rho=0.3"},
        "LightSAM-III is Adam in both SAM steps: Adam moments of the ascent gradient build the probe, Adam moments "
        "of the perturbed gradient build the step. Without bias correction (as in the published renderings) its "
        "first probes are about 3.16ρ per coordinate, so with ρ = 0.3 it looks roughly a unit ahead and, from the "
        "same start and the same noisy minibatches as Adam, ends in a different one of Himmelblau's four minima. "
        "The perturbations view shows where each probe landed; set ρ = 0.05 and both take the same valley.",
    ),
    Preset(
        "sam_lower_lambda_max", "SAM finds lower λ_max", "Hessian",
        {"task": "moons", "steps": "300", "width": "32", "runs": "sgd;sam:rho=0.1"},
        "The largest Hessian eigenvalue along training, for SGD and SAM from the same start and batches. SGD's "
        "λ_max climbs as it fits the data (to about 8 here) and stays there; SAM's rises less, then falls as SAM "
        "keeps moving towards flatter regions, ending near 2.7. The reason: SAM minimises the loss over a ρ-ball, "
        "whose excess over the loss is about ½ρ²λ_max near a minimum. Each estimate comes with its Lanczos "
        "residual; \"exact\" switches to the dense spectrum.",
    ),
    Preset(
        "batch_size_noise", "Batch size and gradient noise", "Perturbations",
        {"task": "noisy_quadratic", "n": "256", "noise": "3", "batch": "4", "steps": "300", "res": "61",
         "runs": "sgd:lr=0.05,momentum=0;sam:lr=0.05,momentum=0,rho=0.1"},
        "The ill-conditioned bowl with simulated minibatch noise, trained with SAM on batches of 4. The probe "
        "direction follows the noisy minibatch gradient, so e_t swings around the full-gradient direction: the "
        "cos(e_t, ∇L) chart measures how much of each perturbation is signal (about 0.6 on average here). Raise "
        "the batch size to 128 in the sidebar and the cosine climbs to about 0.99. Note also that SAM with a fixed "
        "ρ settles about ρ away from the minimum along the sharp axis, where ∇L(θ + e) vanishes, not at it.",
    ),
    Preset(
        "lightsam_claim_digits", "LightSAM's robustness claim on digits", "Radius_sensitivity",
        {"task": "digits", "n": "1797", "width": "32", "depth": "1", "batch": "128", "steps": "150",
         "runs": "sam;lightsam1;lightsam2", "sxv": "0.01,0.1,1", "syv": "0.01,0.1,1"},
        "The 3×3 (ρ, η) protocol of LightSAM's robustness study on the 8×8 digits (a short version: 150 steps): "
        "final test accuracy per cell and the mean ± std over the nine cells. The paper reports that LightSAM's "
        "accuracy varies little over such a grid. Our full reproduction (its table is on the preset's page: 1,500 "
        "steps, three seeds, each method on its own grid) does not confirm it: LightSAM-I reached 72.8 ± 26.9%, LightSAM-II "
        "48.8 ± 42.7% and SAM 68.2 ± 41.1%, while AdaSAM was the robust one (95.2 ± 2.9%). LightSAM-II fails "
        "where its first probe is ρ in every coordinate (ρ = 1) and at η = 1; LightSAM-I is slow at η = 0.01.",
    ),
    Preset(
        "fsam_claim_digits", "F-SAM's generalisation claim on digits", "Radius_sensitivity",
        {"task": "digits", "n": "1797", "width": "32", "depth": "1", "batch": "64", "steps": "200",
         "runs": "sam;fsam:lmbda=0.6", "sxv": "0.05,0.2", "syv": "0.1", "sseeds": "3"},
        "Li et al. (CVPR 2024) report that F-SAM, which removes the full-gradient part of SAM's perturbation, "
        "generalises better than SAM (81.19% against 80.78% on CIFAR-100, one seed each). Here: final test "
        "accuracy of SAM and F-SAM (λ = 0.6 as in the authors' latest script) on digits with minibatches, per "
        "radius, as the mean over seeds (a short version: 200 steps, 3 seeds). Our full measurement (its table "
        "is on the preset's page: 800 steps, 5 paired seeds, MLP and CNN, the paper's λ and the app's) finds no "
        "measurable difference: every F-SAM − SAM gap is within one seed standard deviation of zero, both methods "
        "near the task's ceiling of about 97.5%. The claim is not reproduced at this scale.",
    ),
)}
