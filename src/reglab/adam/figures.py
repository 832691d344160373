"""Figures of `reglab adam`, each returned as PNG bytes (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
import numpy as np  # noqa: E402

from reglab.adam.real_training import RealTrainingResult, first_step_ratio_closed_form  # noqa: E402
from reglab.adam.simulation import SimulationResult  # noqa: E402

# Okabe-Ito colour-blind-safe colours, one per beta / per run
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
DPI = 110


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def simulation_figure(sim: SimulationResult) -> bytes:
    """Rows: distributions. Columns: E[m_t]/E[g], E[v_t]/E[g^2] (both against 1 - beta^t), relative deviation."""
    names = list(sim.results)
    fig, axes = plt.subplots(len(names), 3, figsize=(14, 3.6 * len(names)), squeeze=False)
    t = sim.steps
    n = sim.config.n_runs
    for row, name in enumerate(names):
        res = sim.results[name]
        dist = res.distribution
        for col, (ratios, label) in enumerate(((res.m, "E[m_t] / E[g]"), (res.v, "E[v_t] / E[g²]"))):
            ax = axes[row, col]
            for k, beta in enumerate(sim.config.betas):
                c = COLORS[k % len(COLORS)]
                est, hw = ratios.estimate[k], ratios.half_width[k]
                ax.fill_between(t, est - hw, est + hw, color=c, alpha=0.3, linewidth=0)
                ax.plot(t, est, color=c, lw=1.4, label=f"simulated, β = {beta}")
                ax.plot(t, ratios.closed_form[k], color="black", lw=0.9, ls="--",
                        label="1 − βᵗ" if k == 0 else None)
            ax.set_xscale("log")
            ax.set_xlabel("step t")
            ax.set_ylabel(label)
            ax.set_title(f"{dist.description}: {label}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.legend(fontsize=7, loc="upper left")
        ax = axes[row, 2]
        for k, beta in enumerate(sim.config.betas):
            c = COLORS[k % len(COLORS)]
            for ratios, ls, moment in ((res.m, "-", "m"), (res.v, ":", "v")):
                dev = 100 * ratios.relative_deviation[k]
                ax.plot(t, dev, color=c, ls=ls, lw=1.1, label=f"{moment}, β = {beta}")
                if moment == "v":
                    band = 100 * ratios.relative_half_width[k]
                    ax.fill_between(t, -band, band, color=c, alpha=0.12, linewidth=0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("step t")
        ax.set_ylabel("simulated / (1 − βᵗ) − 1  (%)")
        ax.set_title(f"relative deviation; shaded: 95% band of v ({n:,} runs)", fontsize=9)
        ax.grid(alpha=0.3)
        if row == 0:
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Adam moments from zero, i.i.d. gradients: mean of {n:,} independent runs "
                 f"with 95% Monte-Carlo band, against the closed forms", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def v_ratio_figure(real: RealTrainingResult) -> bytes:
    """v_t and v_hat_t over the running mean of g^2, median and quartiles over the recorded weights."""
    unc, cor = real.v_ratios()
    t = real.corrected.steps
    beta2 = real.config.beta2
    k = unc.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, ratio, title in ((axes[0], unc, "uncorrected v_t / G_t"), (axes[1], cor, "corrected v̂_t / G_t")):
        q25, q50, q75 = np.quantile(ratio, [0.25, 0.5, 0.75], axis=1)
        ax.fill_between(t, q25, q75, color=COLORS[0], alpha=0.3, linewidth=0, label="quartiles")
        ax.plot(t, q50, color=COLORS[0], lw=1.5, label=f"median of {k} weights")
        ax.set_xscale("log")
        ax.set_xlabel("step t")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].plot(t, 1 - beta2 ** t, color="black", ls="--", lw=0.9, label=f"1 − β₂ᵗ (β₂ = {beta2})")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ratio")
    axes[1].axhline(1.0, color="black", ls="--", lw=0.9, label="1")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle("MNIST MLP trained with reglab's Adam: the second moment against the running mean "
                 "G_t = (1/t) Σ g_i² of the same weight", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def first_step_figure(real: RealTrainingResult) -> bytes:
    """Per-weight ratio of the first step without / with correction, against |g_1|, with the closed form."""
    fs = real.first_step
    cfg = real.config
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    rng = np.random.default_rng(0)
    show = rng.choice(len(fs.abs_grad), size=min(8_000, len(fs.abs_grad)), replace=False)
    ax.scatter(fs.abs_grad[show], fs.ratio[show], s=3, alpha=0.3, color=COLORS[0],
               label=f"weights ({len(show):,} of {len(fs.abs_grad):,} with g₁ ≠ 0)")
    grid = np.geomspace(max(fs.abs_grad.min(), 1e-12), fs.abs_grad.max(), 200)
    ax.plot(grid, first_step_ratio_closed_form(grid, cfg.beta1, cfg.beta2, cfg.eps), color="black", lw=1,
            label="(1−β₁)(|g|+ε) / (√(1−β₂)|g|+ε)")
    limit = (1 - cfg.beta1) / math.sqrt(1 - cfg.beta2)
    ax.axhline(limit, color=COLORS[1], ls="--", lw=0.9, label=f"(1−β₁)/√(1−β₂) = {limit:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("|g₁|")
    ax.set_ylabel("uncorrected step / corrected step")
    ax.set_title(f"first step, β₁ = {cfg.beta1}, β₂ = {cfg.beta2}, ε = {cfg.eps:g}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    bins = np.geomspace(max(min(fs.step_corrected.min(), fs.step_uncorrected.min()), 1e-14) / cfg.lr,
                        max(fs.step_corrected.max(), fs.step_uncorrected.max()) / cfg.lr * 1.05, 80)
    ax.hist(fs.step_corrected / cfg.lr, bins=bins, color=COLORS[0], alpha=0.6, label="with correction")
    ax.hist(fs.step_uncorrected / cfg.lr, bins=bins, color=COLORS[1], alpha=0.6, label="without correction")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|w₁ − w₀| / lr")
    ax.set_ylabel("weights")
    ax.set_title(f"size of the first step in units of lr = {cfg.lr:g}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def loss_figure(real: RealTrainingResult) -> bytes:
    """Minibatch training loss per step, with and without bias correction (raw and a moving average)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    window = max(1, min(20, len(real.corrected.loss) // 10))
    for rec, c, label in ((real.corrected, COLORS[0], "with bias correction"),
                          (real.uncorrected, COLORS[1], "without bias correction")):
        ax.plot(rec.steps, rec.loss, color=c, alpha=0.25, lw=0.8)
        smooth = np.convolve(rec.loss, np.ones(window) / window, mode="valid")
        ax.plot(rec.steps[window - 1:], smooth, color=c, lw=1.6,
                label=f"{label} (val loss {rec.val_loss:.3f}, val error {100 * rec.val_error:.2f}%)")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("minibatch cross-entropy (nats/example)")
    cfg = real.config
    ax.set_title(f"same initial weights and minibatches; lr = {cfg.lr:g}, batch {cfg.batch_size}, "
                 f"{real.n_train:,} training examples; bold: moving average over {window} steps", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
