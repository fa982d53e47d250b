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


# the family presets' common task: all 1,797 digits, a one-hidden-layer MLP, minibatches of 64
_DIGITS = {"task": "digits", "n": "1797", "width": "32", "depth": "1", "batch": "64"}

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
    Preset(
        "esam_cost", "ESAM: SAM's accuracy for fewer gradient evaluations", "Radius_sensitivity",
        {**_DIGITS, "steps": "200", "runs": "sam;esam:beta=0.5,gamma=0.5", "sxv": "0.05,0.1", "syv": "0.1",
         "sseeds": "2"},
        "Du et al. (ICLR 2022) make SAM cheaper two ways: each step perturbs only a random share β of the weight "
        "tensors, and the second backward pass uses only the share γ of the batch whose loss the perturbation raised "
        "most. The cost chart puts every cell at its gradient evaluations (in batches): ESAM's sit left of SAM's. Our "
        "measurement (its table is on this page: 600 steps, 5 paired seeds) reproduces the saving, 1.49 against 2.00 "
        "evaluations a step, at 97.02 ± 0.52% test accuracy against SAM's 97.19 ± 0.33%. Neither beats SGD (97.24 ± "
        "0.44%) on this task, so the accuracy claim is not tested here.",
    ),
    Preset(
        "gsam_surrogate_gap", "GSAM: does the surrogate gap shrink?", "Perturbations",
        {**_DIGITS, "steps": "300", "runs": "sam:rho=0.1;gsam:rho=0.1,alpha=0.4"},
        "Zhuang et al. (ICLR 2022) argue that SAM's loss at the perturbed point does not measure flatness by "
        "itself, and add a step that shrinks the surrogate gap h = L(θ + e) − L(θ) (≈ ½ρ²λ_max near a minimum) "
        "without raising the loss. Compare the surrogate-gap chart of the two runs. In our measurement (600 steps, "
        "5 paired seeds, table on this page) GSAM's gap is not smaller: 0.0134 ± 0.0018 against SAM's 0.0130 ± "
        "0.0029 in the last quarter of training. The claim is not reproduced at this scale (α = 0.4, ρ = 0.1).",
    ),
    Preset(
        "ssam_sparsity", "SSAM: perturb only a share of the weights", "Perturbations",
        {**_DIGITS, "steps": "200", "runs": "sam;ssam:sparsity=0.5;ssam:sparsity=0.9"},
        "Mi et al. (NeurIPS 2022) perturb only the weights a binary mask keeps, chosen by the empirical Fisher "
        "information. The mask-density chart shows the share perturbed (0.5 and 0.1 here), and ‖e‖ falls below ρ "
        "because the masked-out coordinates carry part of the gradient. Our measurement (600 steps, 5 paired "
        "seeds, table on this page) finds accuracy flat in the sparsity (97.2–97.4%, SAM 97.19 ± 0.33%) while the "
        "final λ_max rises from 0.37 (SAM) to about 0.6 at sparsity 0.9–0.99: perturbing fewer weights finds a "
        "sharper point. The paper's accuracy gain is not seen at this scale.",
    ),
    Preset(
        "msam_flatness", "mSAM: smaller micro-batches, flatter minima", "Hessian",
        {**_DIGITS, "batch": "128", "steps": "300", "runs": "mbsam:m=1;mbsam:m=4;mbsam:m=16"},
        "m-sharpness (Foret et al. 2021; Behdin et al. 2023): split each batch into m micro-batches, give each its "
        "own SAM perturbation and average the gradients they give. m = 1 is SAM. Watch λ_max over training: the "
        "more micro-batches, the flatter the end point. Our measurement (600 steps, 5 paired seeds, table on this "
        "page) reproduces it: the final λ_max falls from 0.46 at m = 1 to 0.33 at m = 16 (std 0.03), at the same "
        "cost in FLOPs; test accuracy rises from 97.33% to 97.42%, within one standard deviation.",
    ),
    Preset(
        "sampa_parallel", "SAMPa: SAM's two gradients at the same time", "Perturbations",
        {**_DIGITS, "steps": "200", "runs": "sgd;sam:rho=0.1;sampa:rho=0.1,lmbda=0.2"},
        "SAM's second gradient needs the first. Xie et al. (NeurIPS 2024) perturb along the gradient taken at the "
        "previous step's look-ahead point instead, so the two gradients of a step are independent and, on two "
        "devices, take one SGD step's time. The gradient-evaluations chart shows 2 a step for SAM and SAMPa (here "
        "computed one after the other), 1 for SGD; the first perturbation of SAMPa is 0. In our measurement (600 "
        "steps, 5 paired seeds, table on this page) SAMPa reaches 97.42 ± 0.18% against SAM's 97.19 ± 0.33% and "
        "SGD's 97.24 ± 0.44% at 600 sequential evaluations, SAM's 1,200: the cost claim holds, the accuracy gain "
        "is within the seeds' spread.",
    ),
    Preset(
        "lets_learned_radius", "LETS: ρ learned from two starting radii", "Perturbations",
        {**_DIGITS, "steps": "300", "runs": "lets:rho=0.01,rho_lr=30;lets:rho=0.5,rho_lr=30"},
        "LETS (Wang et al., ECML-PKDD 2024) learns SAM's radius on a validation split, moving ρ to shrink the "
        "squared gap between validation and training loss after one unrolled step (the rule is this project's "
        "reading of the paper; see Learn). If the learning finds a preferred radius, runs started far apart should "
        "meet. Watch the ρ_t chart: from 0.01 and 0.5 both climb into the same range but do not meet within the run. "
        "Our measurement (600 steps, 5 seeds, table on this page) at the default step size β = 1 leaves ρ almost "
        "where it started (0.5 → 0.47; 0.01 → 0); at β = 30 it wanders, 0.456 ± 0.274 and 0.169 ± 0.212 over the "
        "seeds at step 599 from 0.01 and 0.5. The claim that ρ is learned to one radius is not reproduced at this "
        "scale.",
    ),
    Preset(
        "mup2_layers", "μP²: every layer perturbed in a wide network", "Perturbations",
        {**_DIGITS, "width": "128", "depth": "2", "act": "relu", "param": "mup", "bw": "16", "steps": "150",
         "runs": "mup2:perturb_mode=naive;mup2"},
        "Haas et al. (NeurIPS 2024): in a wide network plain SAM's perturbation ends up almost entirely in the last "
        "layer, so it stops being sharpness-aware in the others, and the best (η, ρ) drifts with the width. μP² "
        "scales each layer's radius (input ρ·r, hidden ρ, output ρ/r, r = width/base width) on a μP network. The "
        "per-layer chart shows ‖e_l‖₂/‖W_l‖₂: at width 128 (8× the base) plain SAM under μP (perturb_mode=naive) "
        "perturbs the input layer far less than μP² does, and its output layer more. Whether that keeps the best "
        "(η, ρ) in place is the next preset's question (μP²: does the best radius stay put as the width grows?).",
    ),
    Preset(
        "mup2_width_transfer", "μP²: does the best radius stay put as the width grows?", "Radius_sensitivity",
        {**_DIGITS, "depth": "2", "act": "relu", "param": "mup", "bw": "16", "steps": "150",
         "runs": "mup2:perturb_mode=naive,lr=0.3,momentum=0;mup2:perturb_mode=global,lr=0.3,momentum=0;"
                 "mup2:lr=0.3,momentum=0",
         "sx": "width", "sxv": "16,32,64,128", "sy": "rho", "syv": "0.01,0.03,0.1,0.3"},
        "The claim of Haas et al. (NeurIPS 2024, Fig. 1): on a μP network only μP²'s layerwise radii keep the best "
        "ρ in place as the width grows; plain SAM's (μP-naive) and one global ρ·r^−½ (μP-global) drift. Each "
        "panel is a width × ρ grid of final test accuracy, and the red rings mark the best ρ at each width: a flat "
        "line is transfer. Our fuller measurement (table on this page: a 5 × 5 (ρ, η) grid at widths 32–256, 300 "
        "steps, 3 paired seeds) does not reproduce it: the best cell moves by one ρ grid step for SP SAM, μP-naive "
        "and μP² alike, by two for μP-global, and the best η stays at 0.3 for all; the accuracy differences across "
        "ρ (about one point) are close to the seeds' spread at this scale.",
    ),
    Preset(
        "overparam_width", "Overparameterization: does SAM gain more in wider networks?", "Radius_sensitivity",
        {"task": "moons", "n": "400", "noise": "0.25", "steps": "600", "batch": "32",
         "runs": "sgd:lr=0.05,weight_decay=0.0005;sam:lr=0.05,rho=0.05,weight_decay=0.0005",
         "sx": "width", "sxv": "4,16,64,128", "sy": "lr", "syv": "0.05", "sseeds": "3"},
        "Shin et al. (UAI 2025) find that SAM's improvement over SGD grows with the number of parameters, more so "
        "with label noise. Compare SGD's and SAM's row of test accuracy at each width (the cost axis is the same "
        "for a given width); set Label noise in the sidebar to flip a share of the training labels. Our "
        "measurement (table on this page: widths 4–256, 2,000 steps, 5 paired seeds, clean labels) finds no "
        "growing gain: every SAM − SGD accuracy difference is within about one seed standard deviation of zero "
        "(+0.40 ± 0.80 points at width 256), and with 20% of the labels flipped the same (none of the widths "
        "memorised the flipped labels in 2,000 steps). The claim is not reproduced at this scale.",
    ),
)}
