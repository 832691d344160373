"""What a tune leaves in its directory, read back from the Optuna storage.

The storage (``optuna.db``) is the one source of truth: every trial carries
its hyperparameters, state, objective, per-epoch validation errors
(intermediate values) and, as user attributes, its seeds' validation curves.
From it this module writes, atomically:

    tuned.toml                 the base study with each method's best hyperparameters (names as in the preset)
    trials.csv                 one row per trial: method, trial, state, value, hyperparameters, epochs, ...
    trials.json                the same with validation curves (per seed, and the mean reported to Optuna)
    plots/sensitivity-<method>.png   validation error against each hyperparameter

Errors are fractions in [0, 1] in the files and percent in the plots.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from reglab.config import FLOAT_FIELDS, StudyConfig, to_toml
from reglab.results import atomic_write_bytes, atomic_write_json, atomic_write_text, rows_to_csv

STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "waiting"}


def trial_records(studies: dict, spaces: dict) -> list[dict]:
    """Every trial of every method's study, oldest first within each method."""
    from optuna.trial import TrialState

    out = []
    for method, study in studies.items():
        # a WAITING trial is an enqueued one (the preset's values) that no session has asked for yet
        for t in study.get_trials(deepcopy=False, states=[s for s in TrialState if s != TrialState.WAITING]):
            result = t.user_attrs.get("result", {})
            state = STATE_NAMES.get(t.state.name, t.state.name.lower())
            curve = [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
            error = result.get("error")
            if state == "failed" and error is None:
                error = "did not finish: its session ended first"
            out.append({
                "method": method,
                "trial": t.number,
                "state": state,
                "value": t.value if state == "complete" else None,
                "last_reported": curve[-1] if curve else None,
                "preset_default": bool(t.user_attrs.get("preset_default", False)),
                "params": {k: t.params[k] for k in spaces[method] if k in t.params},
                "seeds": t.user_attrs.get("run", {}).get("seeds"),
                "epochs": result.get("epochs", len(curve)),
                "pruned_at": result.get("pruned_at"),
                "diverged": result.get("diverged", {}),
                "duration_s": result.get("duration_s"),
                "error": error,
                "val_error_mean": curve,
                "val_error": result.get("val_error", {}),
                "val_loss": result.get("val_loss", {}),
            })
    return out


def write_history(out_dir: Path, base: StudyConfig, studies: dict, spaces: dict) -> list[dict]:
    """trials.csv and trials.json from the storage; returns the trial records."""
    records = trial_records(studies, spaces)
    params = []
    for space in spaces.values():
        params += [k for k in space if k not in params]
    rows = []
    for r in records:
        row = {k: _cell(r[k]) for k in ("method", "trial", "state", "value", "last_reported", "preset_default",
                                       "epochs", "pruned_at", "duration_s")}
        row["seeds"] = " ".join(str(s) for s in (r["seeds"] or []))
        row.update({p: _cell(r["params"].get(p)) for p in params})
        row["error"] = r["error"] or ""
        rows.append(row)
    columns = ["method", "trial", "state", "value", "last_reported", "preset_default", "epochs", "pruned_at",
               "duration_s", "seeds"] + params + ["error"]
    atomic_write_text(out_dir / "trials.csv", rows_to_csv(rows, columns) if rows else ",".join(columns) + "\n")
    atomic_write_json(out_dir / "trials.json", {
        "study": base.name,
        "units": "errors are fractions in [0, 1]; losses are nats per example; epochs are 1-based",
        "value": "objective: the returned model's validation error, mean over the trial's seeds (complete trials)",
        "val_error_mean": "per epoch, the mean over seeds reported to Optuna for pruning",
        "trials": records,
    })
    return records


def _cell(v):
    if v is None:
        return ""
    return v


def summarize(base: StudyConfig, records: list[dict]) -> tuple[StudyConfig, dict, list[dict]]:
    """The tuned study, a per-method summary, and the failed trials.

    A method's tuned values are those of its complete trial with the lowest value; a method
    with no complete trial keeps the preset's values (``tuned`` is then false).
    """
    methods = {}
    tuned_methods = []
    for m in base.methods:
        mine = [r for r in records if r["method"] == m.name]
        complete = [r for r in mine if r["state"] == "complete" and r["value"] is not None]
        best = min(complete, key=lambda r: (r["value"], r["trial"]), default=None)
        default = next((r for r in complete if r["preset_default"]), None)
        methods[m.name] = {
            "n_trials": len(mine),
            "n_complete": len(complete),
            "n_pruned": sum(r["state"] == "pruned" for r in mine),
            "n_failed": sum(r["state"] == "failed" for r in mine),
            "tuned": best is not None,
            "best_trial": best["trial"] if best else None,
            "best_value": best["value"] if best else None,
            "best_params": best["params"] if best else None,
            "preset_value": default["value"] if default else None,
            "preset_params": {k: getattr(m, k) for k in best["params"]} if best else {},
        }
        tuned_methods.append(m.with_values(**{k: float(v) if isinstance(v, float) or k in FLOAT_FIELDS else v
                                              for k, v in best["params"].items()}) if best else m)
    tuned = base.replace(name=f"{base.name}-tuned", methods=tuple(tuned_methods))
    failed = [{"method": r["method"], "trial": r["trial"], "error": r["error"]}
              for r in records if r["state"] == "failed"]
    return tuned, methods, failed


def tuned_toml_text(tuned: StudyConfig, methods: dict, n_seeds_per_trial: int) -> str:
    """The tuned study as TOML (``reglab run --config`` reads it), with a header saying where it came from."""
    lines = [f"# reglab tune: each method's hyperparameters chosen on the validation split (never the test set)",
             f"# objective: validation error of the returned model, mean over {n_seeds_per_trial} seed(s) per trial"]
    for name, m in methods.items():
        if m["tuned"]:
            pv = "n/a" if m["preset_value"] is None else f"{100 * m['preset_value']:.2f}%"
            lines.append(f"# {name}: trial {m['best_trial']} of {m['n_trials']}, validation error "
                         f"{100 * m['best_value']:.2f}% (preset values: {pv})")
        else:
            lines.append(f"# {name}: no completed trial; preset values kept")
    return "\n".join(lines) + "\n" + to_toml(tuned)


OFF_SCALE_FACTOR = 4.0   # errors above this multiple of the best are drawn at the top edge (the good region stays readable)


def write_plots(out_dir: Path, records: list[dict], spaces: dict) -> list[Path]:
    """plots/sensitivity-<method>.png: validation error (%) against each hyperparameter.

    Complete trials are filled dots (their objective); pruned trials hollow grey dots at their
    last reported validation error; the preset's values a star; the best trial a ring. The
    y-axis ends at OFF_SCALE_FACTOR x the best error; worse trials (diverged ones, say) are
    triangles on the top edge.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    for method, space in spaces.items():
        mine = [r for r in records if r["method"] == method]
        if not mine or not space:
            continue
        names = list(space)
        width = max(3.0 * len(names), 6.0)
        # fixed margins: constrained layout costs about a second per figure on a small CPU
        fig = Figure(figsize=(width, 3.4))
        fig.subplots_adjust(left=0.6 / width, right=1 - 0.15 / width, bottom=0.3, top=0.88, wspace=0.3)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        points = [(r, 100 * r["value"], "complete") for r in mine if r["state"] == "complete" and r["value"] is not None]
        points += [(r, 100 * r["last_reported"], "pruned") for r in mine
                   if r["state"] == "pruned" and r["last_reported"] is not None]
        n_complete = sum(kind == "complete" for _, _, kind in points)
        best = min(((r, y) for r, y, kind in points if kind == "complete"), key=lambda p: p[1], default=None)
        top = OFF_SCALE_FACTOR * best[1] if best and best[1] > 0 else None
        shown = [(r, y, kind) for r, y, kind in points if top is None or y <= top]
        off = [(r, kind) for r, y, kind in points if top is not None and y > top]
        for ax, name in zip(axes, names):
            p = space[name]
            for kind, style in (("pruned", dict(facecolors="none", edgecolors="0.6",
                                                label="pruned (last epoch reported)")),
                                ("complete", dict(color="tab:blue", label="complete"))):
                ax.scatter([r["params"][name] for r, _, k in shown if k == kind],
                           [y for _, y, k in shown if k == kind], s=22, **style)
            if off:
                ax.scatter([r["params"][name] for r, _ in off], [top] * len(off), marker="^", s=30,
                           color="0.4", clip_on=False, zorder=3, label=f"> {top:.3g}% (off scale)")
            for r, y, kind in shown:
                if r["preset_default"]:
                    ax.scatter([r["params"][name]], [y], marker="*", s=140, color="tab:orange", zorder=3,
                               label="preset values")
            if best is not None:
                ax.scatter([best[0]["params"][name]], [best[1]], s=110, facecolors="none", edgecolors="tab:red",
                           linewidths=1.8, zorder=4, label="best")
                if top is not None:   # a best validation error of 0 (an easy table) leaves the scale as it is
                    ax.set_ylim(0.9 * min(y for _, y, _ in shown), top * 1.02)
            if p.log:
                ax.set_xscale("log")
            ax.set_xlim(*_padded(p.low, p.high, p.log))
            ax.set_xlabel(name)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("validation error (%)")
        unique = {}
        for h, lab in zip(*axes[0].get_legend_handles_labels()):
            unique.setdefault(lab, h)
        fig.legend(unique.values(), unique.keys(), fontsize=7, loc="lower center", ncols=len(unique), frameon=False)
        fig.suptitle(f"{method}: validation error vs each hyperparameter "
                     f"({n_complete} complete, {len(points) - n_complete} pruned)", fontsize=10)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        path = out_dir / "plots" / f"sensitivity-{method}.png"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def _padded(low: float, high: float, log: bool) -> tuple[float, float]:
    if log:
        f = (high / low) ** 0.04
        return low / f, high * f
    pad = 0.04 * (high - low) if high > low else 0.05
    return low - pad, high + pad


def best_value_text(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def preset_vs_tuned_table(methods: dict) -> str:
    """Plain-text table: per method, the preset's and the tuned validation error."""
    lines = [f"{'method':<22} {'trials':>6} {'pruned':>6} {'failed':>6} {'preset val err':>15} {'tuned val err':>14}"]
    for name, m in methods.items():
        lines.append(f"{name:<22} {m['n_trials']:>6} {m['n_pruned']:>6} {m['n_failed']:>6} "
                     f"{best_value_text(m['preset_value']):>15} {best_value_text(m['best_value']):>14}")
    return "\n".join(lines)
