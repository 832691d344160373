"""The report's tables and setup text, as plain cells that HTML and Markdown both render.

Numbers are formatted as ``mean ± h`` where ``h`` is the half-width of the
two-sided 95% Student-t interval over seeds (``t_{0.975,n-1} s / sqrt(n)``);
every table says its n. Errors are percent, losses nats per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from reglab.config import IMAGE_DATASETS, WRITTEN_WHEN_SET, MethodConfig
from reglab.report.digest import FINALS, PAPER_CITATION, Digest, MethodData, median_range
from reglab.results import HEADLINE
from reglab.stats import ALPHA


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    emphasis: list[bool] = field(default_factory=list)  # per row: draw attention (significant, best)
    row_colors: list[str | None] = field(default_factory=list)  # colour of the first cell (the method)
    text_columns: int = 1                                      # leading columns of names, left-aligned


def fmt_stat(s: dict, scale: float = 1.0, digits: int = 2, *, counts: bool = False) -> str:
    """``mean ± half-width`` of a stats.describe() dict, or ``mean (n=1)``, or an em dash.

    `counts` (epochs run): a value every seed shares is shown alone, without "± 0".
    """
    if s is None or s.get("mean") is None:
        return "—"
    m = s["mean"] * scale
    if s.get("ci95_half_width") is None:
        return f"{m:.{digits}f} (n={s['n']})"
    if counts and s["ci95_half_width"] == 0.0:
        return f"{m:.0f}"
    return f"{m:.{digits}f} ± {s['ci95_half_width'] * scale:.{digits}f}"


def fmt_median_range(samples: list[float], digits: int = 1) -> str:
    """``median [min – max]`` of timing samples, ``value`` for one, an em dash for none."""
    mr = median_range(samples)
    if mr is None:
        return "—"
    med, lo, hi = mr
    if len(samples) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{lo:.{digits}f} – {hi:.{digits}f}]"


def _digits(key: str) -> int:
    return {"last_train_loss": 4, "epochs_run": 1, "last_sparsity": 1}.get(key, 2)


def results_table(d: Digest) -> Table:
    keys = list(FINALS)
    columns = ["Method", "n"] + [f"{FINALS[k][0]}{' (' + FINALS[k][1] + ')' if FINALS[k][1] else ''}"
                                 for k in keys] + ["Training time (s)"]
    paper = d.paper
    if paper:
        columns.append("Srivastava 2014, Table 9 (%)")
    rows, colors = [], []
    best = _best_method(d, "test_error")
    for m in d.methods:
        row = [m.name, str(max(m.stats[k]["n"] for k in ("test_error_last", "test_error_best_val")))]
        row += [fmt_stat(m.stats[k], FINALS[k][2], _digits(k), counts=k == "epochs_run") for k in keys]
        row.append(fmt_median_range(m.time_s))
        if paper:
            row.append(f"{paper[m.name]:.2f}" if m.name in paper else "—")
        rows.append(row)
        colors.append(m.color)
    notes = ["Mean ± half-width of the 95% Student-t interval over seeds (n seeds per method; with n = 1 no "
             "interval exists). The best-val epoch of a seed is where its method's monitored validation value "
             "(validation loss unless the method sets otherwise) was best; best val error is the validation error "
             "there. Final train loss: the mean minibatch cross-entropy of the last epoch, as trained (dropout on). "
             "Sparsity: fraction of weights with |w| < 1e-3 after the last epoch. "
             "Highlighted: the lowest mean test error of the returned model (the last epoch's, or the "
             "best-val epoch's for a method with early stopping)."]
    if any(m.time_s for m in d.methods):
        n_rep = max(len(m.time_s) for m in d.methods)
        notes.append("Training time: each method with all its seeds, estimated as if trained alone, median "
                     f"[min – max] of {n_rep} timing{'s' if n_rep != 1 else ''}" +
                     (f" ({d.timing['note']})" if d.timing.get("note") else "") + ".")
    if paper:
        notes.append(f"Published column: {PAPER_CITATION}; about 1M updates of batch 100. Compare the ranking; "
                     "the level depends on net size and budget.")
    if not d.complete:
        notes.append(f"The run is incomplete ({d.epochs_done} of {d.n_epochs} epochs): these are the values "
                     "after the last epoch written, not final results.")
    return Table(columns, rows, notes, emphasis=[m.name == best for m in d.methods], row_colors=colors)


def _best_method(d: Digest, key: str) -> str | None:
    scored = [(m.stats[key]["mean"], m.name) for m in d.methods if m.stats[key]["mean"] is not None]
    return min(scored)[1] if scored else None


def headline(d: Digest) -> str:
    """One sentence: which method is best on test error and which differences are significant."""
    key = "test_error"
    best = _best_method(d, key)
    if best is None:
        return "No variant has finished an epoch yet, so there is no result to report."
    m = next(x for x in d.methods if x.name == best)
    s = m.stats[key]
    text = (f"Lowest mean test error: {best}, {fmt_stat(s, 100.0)}% (model of its {m.returned_model}; "
            f"mean of {s['n']} seed{'s' if s['n'] != 1 else ''} ± 95% CI half-width).")
    beats, ties = [], []
    for p in d.paired:
        if best not in (p["a"], p["b"]):
            continue
        other = p["b"] if p["a"] == best else p["a"]
        c = p[key]
        sig = significant(c)
        if sig and ((c["mean_difference"] < 0) == (p["a"] == best)):
            beats.append(other)
        elif sig is not None and not sig:
            ties.append(other)
    n_family = sum(1 for p in d.paired if p[key].get("p_holm") is not None)
    if beats:
        text += (f" Significantly lower than {', '.join(beats)} (paired by seed; Holm-adjusted p < 0.05 over "
                 f"the {n_family} pairwise comparisons).")
    if ties:
        text += (f" Not distinguishable from {', '.join(ties)} with these seeds (Holm-adjusted p ≥ 0.05 over the "
                 f"{n_family} pairwise comparisons).")
    if d.paper and best in d.paper:
        paper_best = min(d.paper, key=d.paper.get)
        text += (f" In Srivastava et al. (2014), Table 9, the best is {paper_best} "
                 f"({d.paper[paper_best]:.2f}%).")
    if not d.complete:
        text += " (The run is incomplete: not final.)"
    return text


def significant(c: dict) -> bool | None:
    """Is a paired comparison significant in its family: Holm-adjusted p < 0.05 (None: too few pairs)."""
    if c.get("significant_holm") is not None:
        return bool(c["significant_holm"])
    q = c.get("p_holm")
    return None if q is None else bool(q < ALPHA)


def schedule_flag_texts(d: Digest) -> list[str]:
    """One sentence per schedule switch after which a method's validation error rose beyond its seed noise."""
    out = []
    for f in d.schedule_flags:
        out.append(f"Schedule switch hurt {f['method']}: after {f['switch']} (epoch {f['epoch']}), its validation "
                   f"error rose by {100 * f['rise']:.2f} pp from epoch {f['before_epoch']} to epoch {f['after_epoch']} "
                   f"(mean of {f['n']} seeds, paired), more than its seed noise ({100 * f['noise']:.2f} pp, the "
                   f"standard deviation over seeds at epoch {f['before_epoch']}). The coefficient or rate may not fit "
                   "this net.")
    return out


def paired_table(d: Digest) -> Table:
    columns = ["A", "B", "n pairs", "A − B, test error (pp)", "95% CI", "p", "p (Holm)",
               "A − B, val error (pp)", "95% CI", "p", "p (Holm)"]
    rows, emphasis = [], []
    for p in d.paired:
        row = [p["a"], p["b"], str(p["test_error"]["n"])]
        sig = False
        for key in HEADLINE:
            c = p[key]
            if c["mean_difference"] is None or c["n"] < 2:
                row += ["—", "—", "—", "—"]
                continue
            s = bool(significant(c))
            sig = sig or s
            row.append(f"{100 * c['mean_difference']:+.2f}{' *' if s else ''}")
            row.append(f"[{100 * c['ci95'][0]:+.2f}, {100 * c['ci95'][1]:+.2f}]" if c["ci95"] else "—")
            row.append(_fmt_p(c["p_value"]))
            row.append(_fmt_p(c.get("p_holm")))
        rows.append(row)
        emphasis.append(sig)
    m = sum(1 for p in d.paired if p["test_error"].get("p_holm") is not None)
    notes = ["Differences in percentage points, A − B, of the returned model's test and validation error (the "
             "last epoch's, or the best-val epoch's for a method with early stopping), paired by seed (seed s of "
             "A against seed s of B: same data order); 95% Student-t interval of the mean difference (not "
             "corrected); p from the two-sided paired t-test. The pairs on one metric are a family of "
             f"{m} tests: p (Holm) is Holm's step-down adjusted p over that family, and * and highlighting mark "
             "a difference significant after that correction (p (Holm) < 0.05), which keeps the chance of any "
             "false 'significant' in the family at 5%. A raw p below 0.05 without a star is one that does not "
             "survive the correction."]
    return Table(columns, rows, notes, emphasis=emphasis, text_columns=2)


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


# ----------------------------------------------------------------------------
# setup

_METHOD_FIELDS = [f for f in MethodConfig.__dataclass_fields__ if f != "name"]
# settings a run writes only when set (config.WRITTEN_WHEN_SET): a method without one has the default (off)
_UNWRITTEN = {f: MethodConfig.__dataclass_fields__[f].default for f in WRITTEN_WHEN_SET}


def hyperparameter_table(d: Digest) -> Table:
    """Every method hyperparameter (rows) for every method (columns); rows that differ are emphasized."""
    columns = ["Hyperparameter"] + [m.name for m in d.methods]
    keys = [k for k in _METHOD_FIELDS if any(k in m.hyperparameters for m in d.methods)]
    keys += sorted({k for m in d.methods for k in m.hyperparameters} - set(keys) - {"name"})
    rows, emphasis = [], []
    for k in keys:
        vals = [_fmt_value(m.hyperparameters.get(k, _UNWRITTEN.get(k, "—"))) for m in d.methods]
        rows.append([k] + vals)
        emphasis.append(len(set(vals)) > 1)
    notes = ["Highlighted rows differ between methods. Conventions: l2 is λ in (λ/2)·Σw²; l1 is λ in λ·Σ|w|; "
             "max_norm of inf disables the constraint; penalties act on weights, never biases."]
    return Table(columns, rows, notes, emphasis=emphasis)


def _fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:g}"
    return str(v)


def _f(hp: dict, key: str, default: float = 0.0) -> float:
    v = hp.get(key, default)
    if v in ("inf", None):
        return math.inf if v == "inf" else default
    return float(v)


def regularizer_formulas(m: MethodData) -> list[str]:
    """The objective's extra terms and constraints for one method, with their coefficients."""
    hp = m.hyperparameters
    out = []
    if _f(hp, "l2") > 0:
        out.append(f"L2 penalty (λ/2)·Σ w², λ = {_f(hp, 'l2'):g}; gradient λ·w; weights only.")
    if _f(hp, "l1") > 0:
        start = _f(hp, "l1_start")
        if start > 0:
            out.append(f"Late L1 penalty λ₁·Σ |w|, λ₁ = {_f(hp, 'l1'):g}, on for steps t > {start:g}·T "
                       f"(the last {100 * (1 - start):.0f}% of the T training steps); gradient λ₁·sign(w).")
        else:
            out.append(f"L1 penalty λ₁·Σ |w|, λ₁ = {_f(hp, 'l1'):g}; gradient λ₁·sign(w); weights only.")
    if _f(hp, "kl_beta") > 0:
        rho = _f(hp, "kl_rho", 0.05)
        ema = _f(hp, "kl_ema")
        avg = (f"an exponential moving average (decay {ema:g}) of the minibatch mean" if ema > 0
               else "the minibatch mean")
        out.append("KL sparsity β·Σⱼ KL(ρ ‖ qⱼ) = β·Σⱼ [ρ·log(ρ/qⱼ) + (1−ρ)·log((1−ρ)/(1−qⱼ))] over hidden "
                   f"units, β = {_f(hp, 'kl_beta'):g}, ρ = {rho:g}; qⱼ = mⱼ/(1+mⱼ) squashes mⱼ, {avg} of unit j's "
                   f"ReLU output, into (0, 1), so the penalty is least at mⱼ = ρ/(1−ρ) = {rho / (1 - rho):.3g}.")
    c = _f(hp, "max_norm", math.inf)
    if 0 < c < math.inf:
        which = "every unit's" if hp.get("max_norm_output") else "each hidden unit's"
        out.append(f"Max-norm: after every update {which} incoming weight vector is projected, "
                   f"wⱼ ← wⱼ·min(1, c/‖wⱼ‖₂), c = {c:g}.")
    p_in, p_hid = _f(hp, "dropout_input"), _f(hp, "dropout_hidden")
    if p_in > 0 or p_hid > 0:
        out.append(f"Inverted dropout: each input unit dropped with p = {p_in:g}, each hidden unit with "
                   f"p = {p_hid:g}; kept units scaled by 1/(1−p); off at evaluation.")
    g_in, g_hid = _f(hp, "gaussian_dropout_input"), _f(hp, "gaussian_dropout_hidden")
    if g_in > 0 or g_hid > 0:
        parts = [f"{what} h ← h·r, r ~ N(1, σ²), σ² = p/(1−p) = {p / (1 - p):.3g} (p = {p:g})"
                 for what, p in (("each input unit", g_in), ("each hidden unit", g_hid)) if p > 0]
        out.append("Gaussian dropout (Srivastava et al. 2014, sec. 10): " + "; ".join(parts)
                   + "; a new r per unit and example each step; off at evaluation.")
    if _f(hp, "orthogonality") > 0:
        out.append(f"Soft orthogonality λₒ·Σₗ ‖Wₗᵀ Wₗ − I‖²_F, λₒ = {_f(hp, 'orthogonality'):g}, Wₗ (in × out) so "
                   "Wₗᵀ Wₗ is the Gram matrix of the units' incoming weight vectors; gradient 4λₒ·W(WᵀW − I); "
                   "weights only.")
    eps = _f(hp, "label_smoothing")
    if eps > 0:
        out.append(f"Label smoothing: training targets (1−ε)·one-hot + ε/C, ε = {eps:g}; the recorded training loss "
                   "is this smoothed cross-entropy, validation and test losses the plain one.")
    if _f(hp, "decoupled_weight_decay") > 0:
        out.append(f"Decoupled weight decay (Loshchilov & Hutter 2019): before every update w ← w − ηₜ·λ_d·w, "
                   f"λ_d = {_f(hp, 'decoupled_weight_decay'):g}, ηₜ the step's learning rate (AdamW with Adam, SGDW "
                   "with SGD); weights only; not a loss term.")
    q = _f(hp, "dropconnect")
    if q > 0:
        out.append(f"DropConnect (Wan et al. 2013), inverted: each step every layer's products read W ⊙ M/(1−p), "
                   f"M ~ Bernoulli(1−p) per weight, p = {q:g}, one M per minibatch (shared by its examples); the "
                   "weight gradient is masked alike, M/(1−p) ⊙ (hᵀ dz); biases never masked; at evaluation the "
                   "plain W (mean-field).")
    if hp.get("early_stopping"):
        out.append(f"Early stopping on {hp.get('monitor', 'val_loss')}: stop after {hp.get('patience')} epochs "
                   f"without an improvement larger than {_f(hp, 'min_delta'):g}; the best weights are restored.")
    out += registry_formulas(m)
    if not out:
        out.append("No regularization: plain cross-entropy.")
    return out


# the regularizers whose text regularizer_formulas writes by hand (with the values worked in)
WRITTEN_OUT = frozenset(("l2", "l1", "l1_late", "kl_sparsity", "max_norm", "dropout", "early_stopping",
                         "gaussian_dropout", "orthogonality", "label_smoothing", "decoupled_weight_decay",
                         "dropconnect"))


def registry_formulas(m: MethodData) -> list[str]:
    """Every other regularizer the method uses (a plugin's, or a built-in without hand-written text),
    as the run recorded it in regularizers.json: its declared formula and the method's values."""
    out = []
    for e in m.regularizers:
        if e["name"] in WRITTEN_OUT:
            continue
        names = [h.get("name") for h in e.get("hyperparameters") or [] if isinstance(h, dict)]
        values = ", ".join(f"{k} = {_fmt_value(m.hyperparameters[k])}" for k in names if k in m.hyperparameters)
        source = "" if e.get("source") in (None, "reglab") else f" (plugin {e['source']})"
        out.append(f"{e['name']}{source}: {e['formula']}" + (f"; {values}." if values else "."))
    return out


def optimizer_text(d: Digest, m: MethodData) -> str:
    """The optimizer and learning-rate schedule of one method, with its formula."""
    hp = m.hyperparameters
    opt = str(d.run.config.get("optimizer", "sgd"))
    lr = _f(hp, "lr", 0.05)
    sched = str(hp.get("lr_schedule", "constant"))
    T, dec = hp.get("lr_decay_steps", 0), _f(hp, "lr_decay", 1.0)
    # as reglab.engine.schedules: s = t − 1 updates done before update t
    schedule = {
        "constant": f"learning rate η = {lr:g}",
        "exponential": f"learning rate η_t = {lr:g}·{dec:g}^(s/{T})",
        "inverse_t": f"learning rate η_t = {lr:g}/(1 + s/{T})",
        "step": f"learning rate η_t = {lr:g}·{dec:g}^⌊s/{T}⌋",
    }.get(sched, f"learning rate from {lr:g}, {sched} schedule")
    if sched != "constant":
        schedule += " with s = t − 1 updates done"
    if opt == "adam":
        return (f"Adam, {schedule}, β₁ = {_f(hp, 'beta1', 0.9):g}, β₂ = {_f(hp, 'beta2', 0.999):g}, "
                f"ε = {_f(hp, 'eps', 1e-8):g} ({'inside' if hp.get('eps_inside_sqrt') else 'outside'} the square "
                f"root), bias correction {'on' if hp.get('bias_correction', True) else 'off'}.")
    mom = _f(hp, "momentum", 0.9)
    mom0 = _f(hp, "momentum_initial", -1.0)
    ramp = int(hp.get("momentum_ramp_steps", 0) or 0)
    momentum = f"momentum μ = {mom:g}"
    if mom0 >= 0 and ramp > 0:
        if hp.get("momentum_ramp", "linear") == "exponential":
            momentum = f"momentum μ_t = {mom:g} − {mom - mom0:g}·exp(−s/{ramp})"
        else:
            momentum = f"momentum rising linearly from {mom0:g} to {mom:g} over {ramp} steps"
    return f"SGD, {schedule}, {momentum}{', Nesterov' if hp.get('nesterov') else ''}."


def architecture_text(d: Digest) -> str:
    cfg = d.run.config
    data = cfg.get("data") or {}
    ds = d.run.dataset or {}
    if "n_features" in ds and "n_classes" in ds:
        d_in, n_out = ds["n_features"], ds["n_classes"]
    elif data.get("name") in IMAGE_DATASETS:
        d_in, n_out = int(data.get("resolution", 28)) ** 2, 10
    else:
        d_in, n_out = 2, 2
    layers = "-".join(str(x) for x in [d_in, *cfg.get("hidden", []), n_out])
    return (f"{layers} multilayer perceptron: ReLU hidden units, linear output, softmax cross-entropy on the "
            f"logits; weight initialisation {cfg.get('init', '?')}, biases start at 0.")


# the DataConfig fields that matter for each kind of data (the others keep their defaults, unused)
_IMAGE_FIELDS = ("resolution", "train_on_all", "standardize", "subset_per_class", "data_seed")
_POINTCLOUD_FIELDS = ("n_points", "noise", "flip", "data_seed")
_SHOWN_ELSEWHERE = {"name", "n_classes", "n_features", "split_sizes"}


def data_text(d: Digest) -> str:
    """One sentence: the dataset and its split sizes (from dataset.json)."""
    ds = d.run.dataset or {}
    text = f"{d.dataset}"
    if all(k in ds for k in ("n_train", "n_val", "n_test")):
        info = ds.get("info") or {}
        train = f"{ds['n_train']:,} training"
        if info.get("train_repeat", 1) > 1 and "n_train_distinct" in info:   # a tiled data-size subset
            train = (f"{info['n_train_distinct']:,} distinct training (each seen {info['train_repeat']} times per "
                     f"epoch, {ds['n_train']:,} per epoch)")
        text += (f": {train}, {ds['n_val']:,} validation and {ds['n_test']:,} test examples "
                 f"(validation picks the best-val epoch and stops early; test is only reported)")
    if "n_features" in ds and "n_classes" in ds:
        text += f"; {ds['n_features']} inputs, {ds['n_classes']} classes"
    return text + "."


def data_rows(d: Digest) -> list[tuple[str, str]]:
    """The data settings that apply to this dataset, then where the data came from (dataset.json info)."""
    data = d.run.config.get("data") or {}
    fields = _IMAGE_FIELDS if data.get("name") in IMAGE_DATASETS else _POINTCLOUD_FIELDS
    rows = [(f"data.{k}", _fmt_value(data[k])) for k in fields if k in data]
    info = (d.run.dataset or {}).get("info") or {}
    rows += [(k, v) for k, v in _flatten("", {k: x for k, x in info.items() if k not in _SHOWN_ELSEWHERE})]
    return rows


def training_rows(d: Digest) -> list[tuple[str, str]]:
    cfg = d.run.config
    keys = ("optimizer", "n_epochs", "batch_size", "seeds", "log_every", "checkpoint_every", "eval_batch_size",
            "device", "matmul_dtype")
    rows = [(k, _fmt_value(cfg[k]) if not isinstance(cfg[k], list) else ", ".join(map(str, cfg[k])))
            for k in keys if k in cfg]
    if d.steps_per_epoch:
        rows.append(("steps per epoch (from the log)", str(d.steps_per_epoch)))
    return rows


def environment_rows(d: Digest) -> list[tuple[str, str]]:
    rows = _flatten("", d.run.environment or {})
    man = d.run.manifest
    for k in ("reglab_version", "created", "updated", "status"):
        if k in man:
            rows.append((f"run {k}", str(man[k])))
    rows.append(("epochs written", f"{d.epochs_done} of {d.n_epochs}"))
    labels = {"study_wall_s": "total wall time of the study", "study_train_s": "training time of the study",
              "sum_of_methods_alone_s": "sum of the methods' times alone"}
    for key, label in labels.items():
        if d.timing.get(key) is not None:
            rows.append((label, f"{d.timing[key]:.1f} s"))
    return rows


def _flatten(prefix: str, obj, depth: int = 0) -> list[tuple[str, str]]:
    if isinstance(obj, dict) and depth < 4:
        out = []
        for k, v in obj.items():
            out += _flatten(f"{prefix}.{k}" if prefix else str(k), v, depth + 1)
        return out
    if isinstance(obj, list):
        return [(prefix, ", ".join(map(str, obj)))]
    return [(prefix, "—" if obj is None else _fmt_value(obj))]


def reproduce_command(d: Digest) -> str | None:
    cmd = d.run.manifest.get("command")
    return str(cmd) if cmd else None
