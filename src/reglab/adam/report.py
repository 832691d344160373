"""Writes what `reglab adam` produced: PNG figures, adam.json and a self-contained adam.html.

The HTML page embeds every figure as a base64 ``data:`` URI, has no script,
and carries the study report's style and Content-Security-Policy (from
:mod:`reglab.report.html`), which forbids every fetch except ``data:``
images: it opens offline and can be mailed as one file. Each figure also
links to its PNG beside the page (a relative link). Every file is written
atomically (temp file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from reglab import __version__
from reglab.adam import figures
from reglab.adam.real_training import RealTrainingResult
from reglab.adam.simulation import SimulationResult
from reglab.report.html import CSP, CSS
from reglab.results import atomic_write_bytes, atomic_write_json, atomic_write_text, now_iso

# the study report's look and its Content-Security-Policy, which forbids every fetch except data: images
EXTRA_CSS = "td.l,th.l{text-align:left}"


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    def cell(tag, i, x):
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{html.escape(str(x))}</{tag}>"
    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, x) for i, x in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(name: str, png: bytes, caption: str) -> str:
    """The PNG embedded as a data URI, a caption, and a relative link to the same PNG beside the page."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f'<figcaption>{html.escape(caption)} <a href="{html.escape(name)}">PNG</a></figcaption></figure>')


def deviation_rows(sim: SimulationResult) -> list[list]:
    return [[r["distribution"], r["moment"], r["beta"], r["t"], f"{100 * r['relative_deviation']:+.3f}",
             f"{100 * r['relative_half_width_95']:.3f}", f"{r['z']:+.2f}"] for r in sim.largest_deviations()]


DEVIATION_HEADER = ["distribution", "moment", "β", "at t", "deviation (%)", "95% half-width (%)",
                    "z (standard errors)"]


def build_page(sim: SimulationResult, real: RealTrainingResult, pngs: dict[str, bytes], command: str) -> str:
    s = real.summary()
    fs = s["first_step"]
    cfg = real.config
    limit = (1 - cfg.beta1) / math.sqrt(1 - cfg.beta2)
    v_rows = [[r["t"], f"{r['closed_form_1_minus_beta2_t']:.6f}", f"{r['uncorrected_median']:.6f}",
               f"{r['corrected_median']:.4f}", f"{r['corrected_q25']:.4f} – {r['corrected_q75']:.4f}"]
              for r in s["v_over_running_mean_g2"]]
    final_rows = [[name, f"{f['train_loss_last_10_steps']:.4f}", f"{f['val_loss']:.4f}",
                   f"{100 * f['val_error']:.2f}"] for name, f in s["final"].items()]
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>reglab adam: bias correction</title>", f"<style>{CSS}{EXTRA_CSS}</style></head><body><main>",
        "<h1>Adam's bias correction: simulation and measurement</h1>",
        f"<p>reglab {html.escape(__version__)}, {html.escape(now_iso())}; command <code>{html.escape(command)}</code>. "
        "The derivation is in <code>docs/adam.md</code>: with m<sub>0</sub> = v<sub>0</sub> = 0 and a stationary "
        "gradient distribution, E[m<sub>t</sub>] = (1 − β<sub>1</sub><sup>t</sup>) E[g] and "
        "E[v<sub>t</sub>] = (1 − β<sub>2</sub><sup>t</sup>) E[g²].</p>",
        "<h2>1. Simulation: i.i.d. gradients</h2>",
        f"<p>{sim.config.n_runs:,} independent runs of {sim.config.n_steps:,} steps per distribution "
        f"(seed {sim.config.seed}); E[g] and E[g²] are the distributions' closed forms; the band is the 95% "
        "normal interval of the run mean. Largest relative deviation from the closed form over t, per row:</p>",
        _table(DEVIATION_HEADER, deviation_rows(sim), left=2),
        _figure("simulation.png", pngs["simulation.png"],
                "Rows: gradient distributions. Left and middle: simulated E[m_t]/E[g] and E[v_t]/E[g²] (colour, "
                "with 95% band) against 1 − βᵗ (dashed). Right: the relative deviation in %, with the 95% band."),
        "<h2>2. Real training: MNIST MLP with reglab's Adam</h2>",
        f"<p>Net 784-{'-'.join(map(str, cfg.hidden))}-10 (ReLU, He-normal weights, zero biases), "
        f"{real.n_train:,} training examples, batch {cfg.batch_size}, {cfg.n_steps} steps, lr {cfg.lr:g}, "
        f"β<sub>1</sub> = {cfg.beta1}, β<sub>2</sub> = {cfg.beta2}, ε = {cfg.eps:g} (outside the square root), "
        f"seed {cfg.seed}. Gradients by autograd, updates by <code>reglab.engine.optim.Adam</code>.</p>",
        f"<h3>v<sub>t</sub> against the running mean G<sub>t</sub> = (1/t) Σ<sub>i≤t</sub> g<sub>i</sub>²</h3>",
        f"<p>Median over {s['n_recorded_weights']} recorded weights of the bias-corrected run.</p>",
        _table(["t", "1 − β₂ᵗ", "median v_t / G_t", "median v̂_t / G_t", "v̂_t / G_t quartiles"], v_rows),
        _figure("v_ratio.png", pngs["v_ratio.png"],
                "Left: uncorrected v_t over the running mean G_t, with 1 − β₂ᵗ. Right: corrected v̂_t over G_t. "
                "Median and quartiles over the recorded weights."),
        "<h3>The first step</h3>",
        f"<p>At t = 1 the corrected step of a weight is lr·|g|/(|g|+ε) ≈ lr; the uncorrected one is "
        f"lr·(1−β<sub>1</sub>)|g|/(√(1−β<sub>2</sub>)|g|+ε). Uncorrected / corrected, median over the "
        f"{fs['n_weights_moved']:,} weights with g<sub>1</sub> ≠ 0: <b>{fs['ratio_uncorrected_over_corrected_median']:.4f}</b> "
        f"(limit for |g| ≫ ε: (1−β<sub>1</sub>)/√(1−β<sub>2</sub>) = {limit:.4f}; smaller where |g| is "
        f"comparable to ε/√(1−β<sub>2</sub>), down to 1−β<sub>1</sub> as |g| → 0). Median step / lr: "
        f"{fs['corrected_step_over_lr_median']:.4f} with correction, {fs['uncorrected_step_over_lr_median']:.4f} "
        f"without. {fs['n_weights_zero_gradient']:,} weights had g<sub>1</sub> = 0 and did not move.</p>",
        _figure("first_step.png", pngs["first_step.png"],
                "Left: per weight, uncorrected over corrected first step against |g₁|, with the closed form. "
                "Right: histogram of the first step in units of lr."),
        "<h3>Training with and without bias correction</h3>",
        _table(["run", "train loss, last 10 steps", "val loss", "val error (%)"], final_rows),
        _figure("loss.png", pngs["loss.png"],
                "Minibatch cross-entropy per step (faint) and its moving average (bold), same initial weights "
                "and minibatch order; one seed."),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def write_outputs(out_dir: str | Path, sim: SimulationResult, real: RealTrainingResult,
                  command: str) -> dict[str, Path]:
    """Write the four PNGs, adam.json and adam.html into `out_dir`; return name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {
        "simulation.png": figures.simulation_figure(sim),
        "v_ratio.png": figures.v_ratio_figure(real),
        "first_step.png": figures.first_step_figure(real),
        "loss.png": figures.loss_figure(real),
    }
    written = {}
    for name, png in pngs.items():
        atomic_write_bytes(out / name, png)
        written[name] = out / name
    atomic_write_json(out / "adam.json", {
        "format": "reglab-adam", "format_version": 1, "reglab_version": __version__, "created": now_iso(),
        "command": command, "simulation": sim.to_dict(), "real_training": real.summary(),
        "dataset": real.dataset_info,
    })
    written["adam.json"] = out / "adam.json"
    atomic_write_text(out / "adam.html", build_page(sim, real, pngs, command))
    written["adam.html"] = out / "adam.html"
    return written
