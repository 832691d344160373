"""The table study: ``none``, early stopping and the six Table 9 methods on a user's own table.

No value carries from MNIST to a 569-row table, so the preset's values are a *starting point*
for ``reglab tune table`` (which writes ``tuned.toml`` for ``reglab run --config``); the net and
the budget are sized from the data by the rules below (docs/studies.md, "Your own table").

Sizing rules (n_train = training rows, d = encoded features, C = classes):

* **Net**: two ReLU hidden layers of width h = the power of two nearest to 2 (d + C), clipped to
  [32, 512] (digits, d = 64, C = 10: 128; breast cancer, d = 30, C = 2: 64; iris: 32).
* **Batch**: ``min(100, ceil(n_train / 20))``: at least 20 updates per epoch.
* **Budget**: ``TABLE_STEPS`` = 2,000 updates, so ``n_epochs = max(5, ceil(2000 / updates per epoch))``;
  the learning rate halves (smoothly) every 1,000 updates.
* **Early stopping**: patience 10 epochs on the validation loss (best weights kept).

Data-size preset: training subsets of 5, 10, 20, 50, 100, 200, 500, 1000 rows per class that are
smaller than the smallest class of the training split (at most the four largest of them), and the
whole split; every size trains about the same number of updates.
"""

from __future__ import annotations

import dataclasses
import math

from reglab.config import DataConfig, MethodConfig, StudyConfig
from reglab.data.dataset import Dataset
from reglab.errors import ReglabError
from reglab.study.datasize import DataSizeStudy

TABLE_STEPS = 2000              # updates per study
TABLE_PATIENCE = 10             # early stopping: epochs without improvement of the validation loss
TABLE_SEEDS = (0, 1, 2)
DATASIZE_LADDER = (5, 10, 20, 50, 100, 200, 500, 1000)   # training rows per class
DATASIZE_MAX_SUBSETS = 4
SMOKE_EPOCHS = 2
# starting values for the tuner (not validated on any table): SGD momentum 0.9, as the MNIST presets
START = dict(lr=0.05, lr_decay=0.5, lr_decay_steps=1000,
             l2=1e-3, l1=1e-5, l1_start=0.8,
             kl_beta=1e-3, kl_rho=0.1, kl_ema=0.9,
             max_norm=3.0, max_norm_dropout=3.0,
             dropout_input=0.1, dropout_hidden=0.25)
PRESETS = ("default", "datasize")


def hidden_width(n_features: int, n_classes: int) -> int:
    """The power of two nearest to 2 (d + C), in [32, 512] (nearest in log scale)."""
    target = 2 * (n_features + n_classes)
    return int(min(512, max(32, 2 ** round(math.log2(target)))))


def table_batch_size(n_train: int) -> int:
    return int(min(100, math.ceil(n_train / 20)))


def table_methods(patience: int = TABLE_PATIENCE) -> tuple[MethodConfig, ...]:
    """none, early_stopping, then the six Table 9 methods, from :data:`START`."""
    from reglab.study.presets import _sgd_table9_methods

    methods = _sgd_table9_methods(START, none=True)
    none = methods[0]
    stopping = dataclasses.replace(none, name="early_stopping", early_stopping=True, patience=patience,
                                   monitor="val_loss")
    return (none, stopping) + methods[1:]


def table_study(data: DataConfig, dataset: Dataset, preset: str = "default", *, name: str | None = None,
                seeds: int | None = None, epochs: int | None = None, smoke: bool = False,
                device: str | None = None, matmul_dtype: str | None = None) -> StudyConfig | DataSizeStudy:
    """The table study for `dataset` (loaded from `data`), sized by the module's rules."""
    if preset not in PRESETS:
        raise ReglabError(f"unknown preset {preset!r} for study 'table'; allowed: {', '.join(PRESETS)}.")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ReglabError(f"--seeds must be a whole number >= 1; got {seeds!r}.")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ReglabError(f"--epochs must be a whole number >= 1; got {epochs!r}.")
    info = dataset.info
    n_train = int(info.get("n_train_distinct", dataset.x_train.shape[0]))
    width = hidden_width(dataset.n_features, dataset.n_classes)
    label = name or "table-" + _slug(info.get("name", "table"))
    batch = table_batch_size(n_train)
    steps_per_epoch = math.ceil(n_train / batch)
    n_epochs = max(5, math.ceil(TABLE_STEPS / steps_per_epoch))
    base = StudyConfig(name=label, data=data, hidden=(width, width), init="he_normal", optimizer="sgd",
                       n_epochs=n_epochs, batch_size=batch,
                       seeds=tuple(range(seeds)) if seeds else TABLE_SEEDS, methods=table_methods(),
                       log_every=5, checkpoint_every=max(1, n_epochs // 10),
                       **({"device": device} if device else {}),
                       **({"matmul_dtype": matmul_dtype} if matmul_dtype else {}))
    if preset == "datasize":
        if epochs is not None:
            raise ReglabError("--epochs does not apply to a data-size study: every size trains the same number "
                              "of updates. Fix: drop --epochs.")
        return table_datasize(base, dataset, smoke=smoke)
    if epochs is not None:
        base = base.replace(n_epochs=epochs)
    if smoke:
        base = base.replace(name=f"{base.name}-smoke", n_epochs=min(base.n_epochs, SMOKE_EPOCHS),
                            log_every=1, checkpoint_every=1)
    return base


def table_datasize(base: StudyConfig, dataset: Dataset, *, smoke: bool = False) -> DataSizeStudy:
    """Sizes up to what the table holds; batch and budget chosen so every size's epochs are whole."""
    n_classes = dataset.n_classes
    train_counts = dataset.info["class_counts"]["train"]
    n_full = int(dataset.x_train.shape[0])
    ladder = [k for k in DATASIZE_LADDER if k < min(train_counts)][-DATASIZE_MAX_SUBSETS:]
    if smoke:
        ladder = ladder[:2]
    if not ladder:
        raise ReglabError(f"the smallest class of the training split has {min(train_counts)} rows; the data-size "
                          f"study needs more than {DATASIZE_LADDER[0]} per class. Fix: use the default preset.")
    # a subset of k per class is tiled to epoch_examples rows per epoch, which the subset sizes and the
    # batch must divide; the whole split's ceil(n_full / batch) updates per epoch must divide n_steps
    epoch_examples = math.lcm(*(k * n_classes for k in ladder))
    target = table_batch_size(n_full)
    batch = max(d for d in range(1, target + 1) if epoch_examples % d == 0)
    period = math.lcm(epoch_examples // batch, math.ceil(n_full / batch))
    n_steps = period * max(1, round((24 if smoke else TABLE_STEPS) / period))
    name = base.name + "-datasize" + ("-smoke" if smoke else "")
    base = base.replace(name=name, batch_size=batch, n_epochs=1, checkpoint_every=10,
                        methods=tuple(dataclasses.replace(m, patience=5) if m.early_stopping else m
                                      for m in base.methods))
    return DataSizeStudy(name=name, base=base, train_per_class=tuple(ladder) + (0,), n_steps=n_steps,
                         epoch_examples=epoch_examples)


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(text).rsplit(".", 1)[0])
    return out.strip("-").lower()[:40] or "table"


# ----------------------------------------------------------------------------
# the command line: `reglab run table` and `reglab tune table` share these options

def add_table_options(p) -> None:
    g = p.add_argument_group("table study (reglab run table / reglab tune table)")
    g.add_argument("--data", metavar="FILE", help="a CSV (delimiter and header sniffed, UTF-8 with or without BOM), "
                   "Parquet or .npz (arrays X, y) file, or sklearn:digits | breast_cancer | wine | iris "
                   "(needs: pip install 'reglab[sklearn]')")
    g.add_argument("--target", metavar="COLUMN", help="the label column (CSV, Parquet)")
    g.add_argument("--split-column", metavar="COLUMN",
                   help="a column saying train / val / test for each row (default: a stratified split)")
    g.add_argument("--val-fraction", type=float, metavar="F", help="of each class to validation (default 0.15)")
    g.add_argument("--test-fraction", type=float, metavar="F", help="of each class to test (default 0.15)")
    g.add_argument("--missing", choices=("error", "drop", "impute"),
                   help="rows with missing values: refuse (default), drop them, or impute (training mean; a "
                        "category for strings)")
    g.add_argument("--max-categories", type=int, metavar="N",
                   help="most distinct values of a string column for one-hot encoding (default 50)")
    g.add_argument("--data-seed", type=int, metavar="N", help="seed of the stratified split (default 0)")


TABLE_OPTIONS = ("data", "target", "split_column", "val_fraction", "test_fraction", "missing", "max_categories",
                 "data_seed")


def table_data_config(args) -> DataConfig:
    """The DataConfig of `reglab run/tune table`'s options (a file's path made absolute)."""
    from pathlib import Path

    if not args.data:
        raise ReglabError("the table study needs its data. Fix: reglab run table --data FILE --target COLUMN "
                          "(or --data sklearn:digits).")
    source = args.data if args.data.startswith("sklearn:") else str(Path(args.data).expanduser().resolve())
    fields = {"source": source, "target": args.target or "", "split_column": args.split_column or "",
              "standardize": True}
    for opt in ("val_fraction", "test_fraction", "missing", "max_categories", "data_seed"):
        if getattr(args, opt) is not None:
            fields[opt] = getattr(args, opt)
    return DataConfig(name="table", **fields)


def given_table_options(args) -> list[str]:
    return ["--" + o.replace("_", "-") for o in TABLE_OPTIONS if getattr(args, o, None) is not None]


def table(source: str = "", *, data=None, target: str = "", preset: str = "default", seeds: int | None = None,
          epochs: int | None = None, smoke: bool = False, device: str | None = None,
          matmul_dtype: str | None = None, **data_fields) -> StudyConfig | DataSizeStudy:
    """Python: the table study for a file / ``sklearn:NAME`` (`source`) or for ``data=(X, y)`` /
    ``data=(frame, "target")``; `data_fields` are other :class:`DataConfig` fields (val_fraction, ...).
    Run it with ``reglab.run_study(cfg, data=...)`` (the same `data`) or, for a file, without."""
    from reglab.data.table import load_table

    data_cfg = DataConfig(name="table", source=source, target=target, **{"standardize": True, **data_fields})
    dataset = load_table(data_cfg, data=data)
    return table_study(data_cfg, dataset, preset, seeds=seeds, epochs=epochs, smoke=smoke, device=device,
                       matmul_dtype=matmul_dtype)
