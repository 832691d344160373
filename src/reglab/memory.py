"""The memory a study needs, estimated from its config before anything is allocated.

A study trains all V = methods x seeds variants as one batched model, so every tensor has a
leading variant axis. With P parameters per variant (each layer ``in x out`` weights plus
``out`` biases; input and output sizes from the dataset) and 4-byte floats, the estimate adds:

* weights 4PV, their gradients 4PV, optimizer state 4PV per buffer (SGD momentum: 1, Adam: 2);
* a compacted copy of weights and optimizer state once some variants stopped early or diverged
  (4PV x (1 + buffers));
* the best weights of early-stopping methods (4PV over those variants);
* a checkpoint: a CPU copy of weights and optimizer state plus its serialized bytes
  (2 x 4PV x (1 + buffers));
* bfloat16 products: a 2-byte copy of the weights (2PV);
* DropConnect, per weight of each variant that uses it: its mask's 16 random bits, the factor, the
  masked weights and the masked gradient (4 bytes each; 2 more for a bfloat16 copy of the masked weights);
* activations of a training step: batch x V x (sum of layer widths) x 4 bytes, x 4 (pre-
  activations, activations, dropout masks, their gradients);
* evaluation: eval_batch x V x (sum of hidden widths + classes) x 4 bytes (each hidden layer's output
  buffer, kept between evaluations, and the logits);
* the dataset itself (float32 features, all splits; the training split x train_repeat).

It is an estimate of the large terms, not a bound: the interpreter, torch and small buffers
come on top (tens to hundreds of MB). :func:`check_memory` refuses a study whose estimate
exceeds what is available: the cgroup's ``memory.max`` minus ``memory.current`` and the
kernel's ``MemAvailable`` on a CPU, ``torch.cuda.mem_get_info`` on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reglab.errors import ReglabError
from reglab.paths import format_bytes

FLOAT_BYTES = 4
MNIST_EXAMPLES = 70_000          # 60,000 training (incl. validation) + 10,000 test images
IMAGE_CLASSES = 10
POINT_CLOUD_FEATURES = 2
POINT_CLOUD_CLASSES = 2
ACTIVATION_COPIES = 4            # pre-activation, activation, dropout mask, gradient


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each large part of a study (see the module docstring)."""
    parts: dict[str, int]
    n_variants: int
    params_per_variant: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        big = sorted(self.parts.items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{k} {format_bytes(v)}" for k, v in big)


def data_shape(data) -> tuple[int, int, int]:
    """(n_features, n_classes, n_examples) of a DataConfig, without loading it."""
    if data.is_image:
        n = MNIST_EXAMPLES
        if data.subset_per_class:
            n = min(n, 3 * IMAGE_CLASSES * data.subset_per_class)
        return data.resolution ** 2, IMAGE_CLASSES, n
    return POINT_CLOUD_FEATURES, POINT_CLOUD_CLASSES, data.n_points


def estimate_study_memory(cfg, variants_per_method: int | None = None) -> MemoryEstimate:
    """The estimate for a StudyConfig (every variant, at its batch and evaluation batch sizes).

    variants_per_method: variants each method trains as (default: its seeds); a tune round trains
    batch_trials x seeds_per_trial of them (given as a count: such a config is never built).
    """
    n_features, n_classes, n_examples = data_shape(cfg.data)
    widths = [n_features, *cfg.hidden, n_classes]
    P = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    per_method = len(cfg.seeds) if variants_per_method is None else variants_per_method
    V = per_method * len(cfg.methods)
    buffers = 2 if cfg.optimizer == "adam" else 1
    weights = FLOAT_BYTES * P * V
    state = weights * (1 + buffers)
    es_variants = sum(per_method for m in cfg.methods if m.early_stopping)
    dropconnect_variants = sum(per_method for m in cfg.methods if m.uses_dropconnect)
    n_weights = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    dropconnect_bytes = 2 + 3 * FLOAT_BYTES + (2 if cfg.matmul_dtype == "bfloat16" else 0)
    parts = {
        "weights": weights,
        "gradients": weights,
        "optimizer state": weights * buffers,
        "compacted copy": state,
        "early-stopping best weights": FLOAT_BYTES * P * es_variants,
        "checkpoint copies": 2 * state,
        "bfloat16 weights": weights // 2 if cfg.matmul_dtype == "bfloat16" else 0,
        "DropConnect masks": dropconnect_bytes * n_weights * dropconnect_variants,
        "activations": FLOAT_BYTES * cfg.batch_size * V * sum(widths[1:]) * ACTIVATION_COPIES,
        "evaluation": FLOAT_BYTES * cfg.eval_batch_size * V * sum(widths[1:]),
        "dataset": FLOAT_BYTES * n_features * n_examples * max(1, cfg.data.train_repeat),
    }
    return MemoryEstimate(parts=parts, n_variants=V, params_per_variant=P)


def available_memory(device: str = "cpu", root: Path = Path("/sys/fs/cgroup"),
                     meminfo: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """Bytes available now, by source: "cgroup" (limit - usage), "MemAvailable", or "cuda" (free)."""
    if device == "cuda":
        import torch
        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            return {"cuda": int(free)}
        return {}
    out: dict[str, int] = {}
    cgroup = _cgroup_free(root)
    if cgroup is not None:
        out["cgroup"] = cgroup
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                out["MemAvailable"] = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    return out


def _cgroup_free(root: Path) -> int | None:
    """cgroup v2 memory.max - memory.current, or v1 limit_in_bytes - usage_in_bytes; None without a limit."""
    for limit_name, usage_name in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (root / limit_name).read_text().strip()
            usage = int((root / usage_name).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:   # v1 writes "no limit" as ~2^63
            return None
        return max(0, int(limit) - usage)
    return None


def check_memory(cfg, device: str | None = None, available: dict[str, int] | None = None,
                 variants_per_method: int | None = None) -> MemoryEstimate:
    """The estimate of `cfg`; a ReglabError with the estimate, what is available and the fix when it does
    not fit (no source of available memory: not refused)."""
    device = device or cfg.device
    est = estimate_study_memory(cfg, variants_per_method)
    available = available_memory(device) if available is None else available
    if not available:
        return est
    free = min(available.values())
    if est.total > free:
        where = "free on the GPU" if device == "cuda" else \
            "; ".join(f"{k} {format_bytes(v)}" for k, v in sorted(available.items()))
        fixes = "fewer seeds (--seeds), fewer methods, a smaller net (--set hidden=[...]) or a smaller batch"
        if device != "cuda":
            fixes += ", or train on a GPU (--device cuda)"
        raise ReglabError(
            f"study {cfg.name!r} needs about {format_bytes(est.total)} of memory ({est.n_variants} variants x "
            f"{est.params_per_variant:,} parameters; {est.describe()}) but {format_bytes(free)} is available "
            f"({where}). Fix: {fixes}.")
    return est
