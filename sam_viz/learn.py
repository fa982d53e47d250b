"""Teaching text for the Learn page: each optimizer's update in LaTeX and the view that shows its effect."""

from __future__ import annotations

LATEX: dict[str, str] = {
    "sgd": r"b_t = \mu\, b_{t-1} + \nabla L_B(\theta_t) + \lambda\theta_t,\qquad \theta_{t+1} = \theta_t - \eta\, b_t",
    "adam": r"m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\; v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\qquad "
            r"\theta_{t+1} = \theta_t - \eta\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}",
    "sam": r"s_t = \nabla L_B(\theta_t),\; e_t = \rho\,\frac{s_t}{\lVert s_t\rVert},\qquad "
           r"\theta_{t+1} = \mathrm{base}\big(\theta_t,\ \nabla L_B(\theta_t + e_t)\big)",
    "asam": r"T_t = \mathrm{diag}(|\theta_t|) + \eta I,\; e_t = \rho\,\frac{T_t^2 s_t}{\lVert T_t s_t\rVert},\qquad "
            r"\theta_{t+1} = \mathrm{base}\big(\theta_t,\ \nabla L_B(\theta_t + e_t)\big)",
    "fsam": r"d_t = s_t - \sigma m_{t-1},\; m_t = \lambda m_{t-1} + (1-\lambda) s_t,\; e_t = \rho\,\frac{d_t}{\lVert d_t\rVert},\qquad "
            r"\theta_{t+1} = \mathrm{base}\big(\theta_t,\ \nabla L_B(\theta_t + e_t)\big)",
    "lightsam1": r"u_t = u_{t-1} + \lVert s_t\rVert^2,\; e_t = \frac{\rho\, s_t}{\sqrt{u_t}},\; "
                 r"v_t = v_{t-1} + \lVert g_t\rVert^2,\qquad \theta_{t+1} = \theta_t - \frac{\eta\, g_t}{\sqrt{v_t}}",
    "lightsam2": r"u_t = u_{t-1} + s_t^2,\; e_t = \frac{\rho\, s_t}{\sqrt{u_t}},\; v_t = v_{t-1} + g_t^2,\qquad "
                 r"\theta_{t+1} = \theta_t - \frac{\eta\, g_t}{\sqrt{v_t}}",
    "lightsam3": r"r_t, u_t = \mathrm{Adam\ moments}(s_t),\; e_t = \frac{\rho\, r_t}{\sqrt{u_t}},\; "
                 r"m_t, v_t = \mathrm{Adam\ moments}(g_t),\qquad \theta_{t+1} = \theta_t - \frac{\eta\, m_t}{\sqrt{v_t}}",
    "adasam": r"e_t = \rho\,\frac{s_t}{\lVert s_t\rVert},\; m_t, v_t = \mathrm{Adam\ moments}(g_t),\; "
              r"\hat v_t = \max(\hat v_{t-1}, v_t),\qquad \theta_{t+1} = \theta_t - \frac{\eta\, m_t}{\sqrt{\hat v_t}}",
    "msam": r"e_t = \frac{\rho}{\sqrt{1 + \lVert s_t\rVert^2}}\,\frac{s_t}{\lVert s_t\rVert},\qquad "
            r"\theta_{t+1} = \mathrm{base}\big(\theta_t,\ \nabla L_B(\theta_t + e_t)\big)",
}

WHERE: dict[str, str] = {
    "sgd": "Loss surface: the baseline path; Hessian: λ_max rises during training (full-batch GD without momentum stops near 2/η, the edge of stability).",
    "adam": "Loss surface: sign-like steps along the valley floor; compare with LightSAM-III.",
    "sam": "Perturbations: the probe θ + e sits on a sphere of radius ρ; Radius sensitivity: the band of good ρ.",
    "asam": "Perturbations: the probe scales with each weight's size, so ‖e‖ differs from ρ.",
    "fsam": "Perturbations: cos(e, ∇L) drops towards 0 — the full-gradient part is removed.",
    "lightsam1": "Perturbations: the effective radius ρ/√u_t and learning rate η/√v_t shrink on their own; Radius sensitivity: a flat map.",
    "lightsam2": "Perturbations: per-coordinate effective radius and learning rate (median shown); Radius sensitivity.",
    "lightsam3": "Loss surface and Perturbations: large early probes (no bias correction), Adam-like steps.",
    "adasam": "Perturbations: SAM's probe with an AMSGrad-style effective learning rate.",
    "msam": "Perturbations: ‖e‖ = ρ/√(1 + ‖s‖²) is small while gradients are large, then grows to ρ.",
}
