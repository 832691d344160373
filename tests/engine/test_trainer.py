"""The batched Trainer against plain PyTorch, and its contract: determinism, resume, early stopping, divergence."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from reglab.config import DataConfig, MethodConfig, StudyConfig
from reglab.data.dataset import Dataset
from reglab.engine import EpochRecord, Trainer
from reglab.engine import regularizers as R
from reglab.engine import trainer as trainer_module
from reglab.engine.mlp import BatchedMLP
from reglab.engine.reference import ReferenceRun
from reglab.errors import ReglabError

from .conftest import mnist_tensors, synthetic_dataset

# One example method per registered regularizer (plus the other engine features);
# each must train exactly like plain torch.nn + torch.optim.
EXAMPLES = {
    "l2": MethodConfig("l2", l2=1e-2),
    "l1": MethodConfig("l1", l1=1e-3),
    "l1_late": MethodConfig("l2+l1_late", l2=1e-3, l1=1e-3, l1_start=0.5),
    # moderate KL: with near-dead units its gradient ~ rho/m amplifies float rounding
    "kl_sparsity": MethodConfig("l2+kl", l2=1e-3, kl_beta=0.02, kl_rho=0.2),
    "kl_sparsity_ema": MethodConfig("kl_ema", kl_beta=0.05, kl_rho=0.1, kl_ema=0.9),
    "max_norm": MethodConfig("max_norm", max_norm=0.8),
    "max_norm_output": MethodConfig("max_norm_all", max_norm=0.8, max_norm_output=True),
    "dropout": MethodConfig("dropout+l2", dropout_input=0.2, dropout_hidden=0.5, l2=1e-3),
    "early_stopping": MethodConfig("early_stopping", early_stopping=True, patience=100),
    "schedule_and_ramp": MethodConfig("ramped", lr_schedule="inverse_t", lr_decay_steps=10, momentum=0.95,
                                      momentum_initial=0.5, momentum_ramp_steps=20),
    "step_schedule_exponential_ramp": MethodConfig("stepped", lr_schedule="step", lr_decay=0.5, lr_decay_steps=15,
                                                   momentum=0.99, momentum_initial=0.5, momentum_ramp_steps=30,
                                                   momentum_ramp="exponential"),
    "dropout_kl": MethodConfig("dropout+kl", dropout_hidden=0.3, kl_beta=0.02, kl_rho=0.2, kl_ema=0.5),
    "nesterov": MethodConfig("nesterov", nesterov=True),
    "nesterov_ramp": MethodConfig("nesterov_ramp", nesterov=True, momentum_initial=0.5, momentum_ramp_steps=30),
    # beyond Table 9 (issue 19); hidden rate 0.5: sigma = 1, so 16% of the factors are negative
    "gaussian_dropout": MethodConfig("gaussian_dropout+l2", gaussian_dropout_input=0.2, gaussian_dropout_hidden=0.5,
                                     l2=1e-3),
    "orthogonality": MethodConfig("orthogonality", orthogonality=1e-3),
    "label_smoothing": MethodConfig("label_smoothing", label_smoothing=0.1),
    "decoupled_weight_decay": MethodConfig("decoupled_wd+l2", decoupled_weight_decay=0.05, l2=1e-3),
    "dropconnect": MethodConfig("dropconnect+l2", dropconnect=0.3, l2=1e-3),
}
N_EPOCHS = 6          # x 10 steps per epoch = 60 steps
SEEDS = (3, 4)


def _study(method: MethodConfig, optimizer: str, **kw) -> StudyConfig:
    lr = 0.01 if optimizer == "adam" else 0.05
    method = dataclasses.replace(method, lr=lr)
    other = MethodConfig("other", l2=1e-3, lr=lr)            # a neighbour slice, to catch slicing mistakes
    base = dict(name="test", data=DataConfig(name="moons", data_seed=5), hidden=(16, 8), n_epochs=N_EPOCHS,
                batch_size=24, seeds=SEEDS, methods=(other, method), optimizer=optimizer)
    base.update(kw)
    return StudyConfig(**base)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


CASES = [(name, opt) for name in list(R.REGULARIZERS) + ["kl_sparsity_ema", "max_norm_output", "dropout_kl",
                                                         "schedule_and_ramp",
                                                         "step_schedule_exponential_ramp", "nesterov", "nesterov_ramp"]
         for opt in ("sgd", "adam") if not (name.startswith("nesterov") and opt == "adam")]
# float64 shows the batched math IS the reference's (differences ~1e-15); float32 shows what a study gets:
# rounding differences, amplified over 60 steps (most by KL-sparsity, whose gradient ~ rho/m for small m)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-4}


def _dataset_as(ds: Dataset, dtype: torch.dtype) -> Dataset:
    return dataclasses.replace(ds, **{k: getattr(ds, k).to(dtype) for k in ("x_train", "x_val", "x_test")})


def _train_beside_reference(method: MethodConfig, optimizer: str, dataset: Dataset, **trainer_kw):
    """``method`` (beside a neighbour) trained N_EPOCHS in float64 by the batched engine, and each seed of it
    by ReferenceRun (plain torch.nn + torch.optim): (trainer, its epoch records, [(k, ref)]), where k is
    the seed's variant index in the batch and ref its finished reference run."""
    cfg = _study(method, optimizer)
    ds = _dataset_as(dataset, torch.float64)
    trainer = Trainer(cfg, ds, dtype=torch.float64, **trainer_kw)
    records = [trainer.train_epoch() for _ in range(N_EPOCHS)]
    pairs = []
    for j, seed in enumerate(SEEDS):
        ref = ReferenceRun(cfg, cfg.methods[1], seed, ds.x_train, ds.y_train, 3, dtype=torch.float64)
        for _ in range(N_EPOCHS):
            ref.train_epoch()
        pairs.append((len(SEEDS) + j, ref))
    return trainer, records, pairs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name,optimizer", CASES)
def test_variant_k_of_a_batched_run_equals_a_plain_torch_run(name, optimizer, dtype, small_dataset):
    cfg = _study(EXAMPLES[name], optimizer)
    method = cfg.methods[1]
    ds = _dataset_as(small_dataset, dtype)
    trainer = Trainer(cfg, ds, dtype=dtype)
    records = [trainer.train_epoch() for _ in range(N_EPOCHS)]
    assert trainer.done and trainer.step == 60
    tol = TOLERANCE[dtype]
    if method.uses_max_norm and dtype == torch.float64:
        tol = 1e-6   # torch.renorm scales by c / (norm + 1e-7): a 1e-7 relative difference per projection
    for j, seed in enumerate(SEEDS):
        k = len(SEEDS) + j                                    # the example method's variants
        ref = ReferenceRun(cfg, method, seed, ds.x_train, ds.y_train, 3, dtype=dtype)
        snapshots = []
        for _ in range(N_EPOCHS):
            ref.train_epoch()
            snapshots.append([lin.weight.detach().T.clone() for lin in ref.linears])
        expected = snapshots[-1]
        if method.early_stopping:   # training ended: the variant returns its best-validation weights
            expected = snapshots[trainer.final_summary()["variants"][k]["best_epoch"] - 1]
        for l, w in enumerate(expected):
            assert _rel_err(trainer.model.weights[l][k], w) <= tol, (name, seed, l)
        data = np.concatenate([r.loss_data[:, k] for r in records])
        penalty = np.concatenate([r.loss_penalty[:, k] for r in records])
        assert np.allclose(data, ref.losses, rtol=tol, atol=tol / 10)
        assert np.allclose(penalty, ref.penalties, rtol=tol, atol=tol / 10)


def test_every_registered_regularizer_has_an_example_that_uses_it():
    for name, uses in R.REGULARIZERS.items():
        assert uses(EXAMPLES[name]), name


ALL_METHODS = (
    MethodConfig("l2", l2=1e-3),
    MethodConfig("l2+l1", l2=1e-3, l1=1e-4, l1_start=0.5),
    MethodConfig("l2+kl", l2=1e-3, kl_beta=0.01, kl_ema=0.9),
    MethodConfig("max_norm", max_norm=1.0),
    MethodConfig("dropout+max_norm", dropout_input=0.2, dropout_hidden=0.5, max_norm=1.5),
    MethodConfig("early_stopping", early_stopping=True, patience=1, monitor="val_error"),
)


def _all_methods_study(optimizer: str = "sgd", n_epochs: int = 3, **kw) -> StudyConfig:
    return StudyConfig(name="all", hidden=(16, 8), n_epochs=n_epochs, batch_size=32, seeds=(0, 1),
                       methods=ALL_METHODS, optimizer=optimizer, **kw)


def _same_records(a: EpochRecord, b: EpochRecord) -> bool:
    timing = ("epoch_time_s", "eval_time_s")
    return (a.epoch == b.epoch and np.array_equal(a.steps, b.steps)
            and np.array_equal(a.loss_data, b.loss_data, equal_nan=True)
            and np.array_equal(a.loss_penalty, b.loss_penalty, equal_nan=True)
            and all(np.array_equal(a.metrics[k], b.metrics[k], equal_nan=True) for k in a.metrics if k not in timing))


def test_the_same_seed_gives_bitwise_identical_metrics(small_dataset):
    cfg = _all_methods_study()
    first, second = Trainer(cfg, small_dataset), Trainer(cfg, small_dataset)
    for _ in range(3):
        assert _same_records(first.train_epoch(), second.train_epoch())
    assert first.final_summary() == second.final_summary()


def test_a_different_data_seed_changes_the_minibatch_order(small_dataset):
    cfg = _all_methods_study(n_epochs=1)
    other = cfg.replace(data=DataConfig(name="moons", data_seed=1))
    a, b = Trainer(cfg, small_dataset).train_epoch(), Trainer(other, small_dataset).train_epoch()
    assert not np.array_equal(a.loss_data, b.loss_data)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_from_a_state_dict_continues_bit_identically(optimizer, small_dataset):
    cfg = _all_methods_study(optimizer, n_epochs=4)
    straight = Trainer(cfg, small_dataset)
    straight_records = [straight.train_epoch() for _ in range(4)]

    first = Trainer(cfg, small_dataset)
    first.train_epoch()
    first.train_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    del first
    resumed = Trainer(cfg, small_dataset)
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    assert resumed.epoch == 2
    for expected in straight_records[2:]:
        assert _same_records(resumed.train_epoch(), expected)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(a, b)
    assert resumed.final_summary() == straight.final_summary()


def test_a_state_dict_from_another_study_is_refused(small_dataset):
    state = Trainer(_all_methods_study(n_epochs=2), small_dataset).state_dict()
    with pytest.raises(ReglabError, match="different study"):
        Trainer(_all_methods_study(n_epochs=3), small_dataset).load_state_dict(state)


def test_a_variant_trains_the_same_alone_as_inside_a_larger_study(small_dataset):
    big = _all_methods_study(n_epochs=2)
    alone = big.replace(methods=(ALL_METHODS[4],), seeds=(1,))
    a, b = Trainer(big, small_dataset), Trainer(alone, small_dataset)
    k = 4 * 2 + 1                                            # dropout+max_norm, seed 1
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p[k], q[0])                       # same initial weights
    for _ in range(2):
        ra, rb = a.train_epoch(), b.train_epoch()
        assert np.allclose(ra.loss_data[:, k], rb.loss_data[:, 0], rtol=1e-6, atol=1e-7)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert _rel_err(p[k], q[0]) < 1e-6


def _weights_of(methods: tuple[MethodConfig, ...], name: str, optimizer: str, dataset: Dataset) -> list[torch.Tensor]:
    """Seed 4 of method `name`'s parameters after 2 epochs of a study of `methods` (seeds 3 and 4)."""
    cfg = StudyConfig(name="beside", data=DataConfig(name="moons", data_seed=5), hidden=(16, 8), n_epochs=2,
                      batch_size=24, seeds=(3, 4), methods=methods, optimizer=optimizer)
    trainer = Trainer(cfg, dataset)
    for _ in range(2):
        trainer.train_epoch()
    k = 2 * [m.name for m in methods].index(name) + 1
    return [p[k].clone() for p in trainer.model.parameters()]


@pytest.mark.parametrize("name,optimizer", [(name, opt) for name in EXAMPLES for opt in ("sgd", "adam")
                                             if not (EXAMPLES[name].nesterov and opt == "adam")])
def test_a_variant_trains_bit_identically_alone_and_beside_any_other_method(name, optimizer, small_dataset):
    """Joining runs of different seeds (docs/examples/holm_per_epoch.py) and a method trained alone for its
    timing rest on this: a variant's numbers are its method's, its seed's and the data order's, whatever
    trains beside it. Until 2026-12-07 a neighbour with another momentum (a ramp, the paper preset's dropout
    methods) changed them by rounding: the buffers were scaled by a per-variant tensor before the product was
    added, where a study with one momentum adds the product inside the GEMM (``baddbmm_(beta=mu)``); and a
    Nesterov method moved every variant of its study to the unfused SGD path (``b = mu b + g`` after the
    product)."""
    method = dataclasses.replace(EXAMPLES[name], name="A", lr=0.05)
    alone = _weights_of((method,), "A", optimizer, small_dataset)
    neighbours = {other_name: dataclasses.replace(other, lr=0.01) for other_name, other in EXAMPLES.items()
                  if other_name != name and not (other.nesterov and optimizer == "adam")}  # Nesterov: SGD only
    changed = {k: getattr(method, k) * f for k, f in OTHER_VALUES.items() if getattr(method, k) not in (0, -1, False)}
    if changed:                 # the same regularizers at other values: one run of variants with the hook
        neighbours["itself at other values"] = dataclasses.replace(method, name="B", **changed)
    for other_name, other in neighbours.items():
        orders = [(other, method)] + ([(method, other)] if other.name == "B" else [])    # itself: both sides
        for order in orders:
            beside = _weights_of(order, "A", optimizer, small_dataset)
            for p, q in zip(beside, alone):
                assert torch.equal(p, q), f"{name} beside {other_name} ({optimizer}) differs from {name} alone"


# factors giving a method's own values another setting (rates stay in [0, 1))
OTHER_VALUES = {"l2": 3.0, "l1": 3.0, "l1_start": 0.5, "kl_beta": 2.0, "kl_rho": 0.5, "kl_ema": 0.5, "max_norm": 1.7,
                "dropout_input": 0.5, "dropout_hidden": 0.6, "gaussian_dropout_input": 0.5,
                "gaussian_dropout_hidden": 0.6, "orthogonality": 3.0, "label_smoothing": 2.0,
                "decoupled_weight_decay": 2.0, "dropconnect": 0.5, "momentum": 0.9, "patience": 2}


def test_nesterov_methods_apart_in_the_study_each_train_as_alone(small_dataset):
    """Two Nesterov methods with a plain one between them (their momenta kept aside run by run, the plain
    one's buffer untouched by that)."""
    methods = (dataclasses.replace(EXAMPLES["nesterov"], lr=0.05), MethodConfig("plain", lr=0.05, l2=1e-3),
               dataclasses.replace(EXAMPLES["nesterov_ramp"], lr=0.05))
    for m in methods:
        assert all(torch.equal(p, q) for p, q in zip(_weights_of(methods, m.name, "sgd", small_dataset),
                                                     _weights_of((m,), m.name, "sgd", small_dataset))), m.name


def _overfitting_dataset() -> Dataset:
    return synthetic_dataset(n_train=120, n_val=200, n_test=200, n_features=20, label_noise=0.4, seed=3)


def test_early_stopping_restores_the_weights_with_the_best_recorded_validation_value():
    ds = _overfitting_dataset()
    es = MethodConfig("es", lr=0.2, early_stopping=True, patience=2, monitor="val_loss")
    cfg = StudyConfig(name="es", hidden=(64,), n_epochs=40, batch_size=20, seeds=(0, 1),
                      methods=(MethodConfig("plain", lr=0.2), es))
    trainer = Trainer(cfg, ds)
    records = []
    weights_when_stopped = {}
    while not trainer.done:
        records.append(trainer.train_epoch())
        for v in (2, 3):
            if trainer.stop_epoch[v] == trainer.epoch:
                weights_when_stopped[v] = [p[v].clone() for p in trainer.model.parameters()]
    summary = trainer.final_summary()["variants"]
    val_loss = np.stack([r.metrics["val_loss"] for r in records])           # (epochs, V)
    for v in (2, 3):
        row = summary[v]
        assert row["stop_epoch"] is not None, "the noisy labels should make validation loss rise"
        assert row["stop_epoch"] == row["best_epoch"] + 2
        assert row["best_val_loss"] == np.nanmin(val_loss[:, v])
        assert np.nanargmin(val_loss[:, v]) + 1 == row["best_epoch"]
        # the weights it ends with are the best-epoch weights: re-evaluating them gives the best value
        sums = trainer.model.evaluate(trainer.x_val, trainer.y_val, 1000)
        assert float(sums["loss_sum"][v] / ds.x_val.shape[0]) == row["best_val_loss"]
        assert row["test_error_last"] == row["test_error_best_val"]
        # a stopped variant stops updating; its later metrics are NaN, not padded
        for p, w in zip(trainer.model.parameters(), weights_when_stopped[v]):
            assert torch.equal(p[v], w)
        after = [r for r in records if r.epoch > row["stop_epoch"]]
        assert all(np.isnan(r.metrics["val_loss"][v]) and not r.metrics["active"][v] for r in after)
        assert all(np.isnan(r.loss_data[:, v]).all() for r in after)
    # the variants without early stopping ran to the end
    assert len(records) == 40 and summary[0]["stop_epoch"] is None and records[-1].metrics["active"][0]


def test_a_diverging_variant_is_marked_and_frozen_while_the_others_finish(small_dataset):
    fine = MethodConfig("fine", lr=0.05)
    exploding = MethodConfig("exploding", lr=1e4, momentum=0.99)
    cfg = StudyConfig(name="div", hidden=(16,), n_epochs=4, batch_size=24, seeds=(0,), methods=(fine, exploding))
    trainer = Trainer(cfg, small_dataset)
    records = [trainer.train_epoch() for _ in range(4)]
    summary = trainer.final_summary()["variants"]
    assert summary[1]["diverged"] and not summary[0]["diverged"]
    stop = summary[1]["stop_epoch"]
    assert stop is not None and np.isnan(summary[1]["test_error_last"])
    for r in records:
        assert np.isfinite(r.metrics["val_loss"][0]) and r.metrics["active"][0]
        if r.epoch >= stop:
            assert np.isnan(r.metrics["val_loss"][1]) and r.metrics["diverged"][1] and not r.metrics["active"][1]
    analysis = trainer.analysis()
    assert analysis["diverged"].tolist() == [False, True]
    assert np.isnan(analysis["weight_hist"][1]).all() and np.isfinite(analysis["weight_hist"][0]).all()
    # the healthy variant is untouched by its neighbour's explosion
    alone = Trainer(cfg.replace(methods=(fine,)), small_dataset)
    for _ in range(4):
        alone.train_epoch()
    for p, q in zip(trainer.model.parameters(), alone.model.parameters()):
        assert _rel_err(p[0], q[0]) < 1e-6


def test_an_epoch_record_follows_the_contract(small_dataset):
    cfg = _all_methods_study(n_epochs=2, log_every=3)
    trainer = Trainer(cfg, small_dataset)
    assert trainer.epoch == 0 and not trainer.done
    rec = trainer.train_epoch()
    V, S = cfg.n_variants, trainer.steps_per_epoch
    assert rec.epoch == 1 and S == 8
    assert rec.steps.tolist() == [3, 6]
    assert rec.loss_data.shape == rec.loss_penalty.shape == (2, V)
    keys = {"train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error", "sparsity",
            "mean_activation", "lr", "momentum", "epoch_time_s", "active", "diverged"}
    assert keys <= set(rec.metrics)
    for k, x in rec.metrics.items():
        assert x.shape == (V,), k
    for k in ("train_error", "val_error", "test_error", "sparsity"):
        assert ((rec.metrics[k] >= 0) & (rec.metrics[k] <= 1)).all()
    assert (rec.loss_penalty[:, 0:2] > 0).all()              # L2 is on for the first method
    assert rec.metrics["active"].dtype == bool and rec.metrics["active"].all()
    assert rec.metrics["lr"].tolist() == [0.05] * V
    rec2 = trainer.train_epoch()
    assert rec2.steps.tolist() == [9, 12, 15]
    assert trainer.done
    with pytest.raises(RuntimeError, match="done"):
        trainer.train_epoch()
    rows = trainer.final_summary()["variants"]
    assert [r["method"] for r in rows] == [m.name for _, m, _ in cfg.variants()]
    assert set(rows[0]) >= {"test_error_last", "test_error_best_val", "best_val_error", "best_epoch",
                            "stop_epoch", "diverged"}


def test_analysis_gives_weight_histograms_activations_and_a_decision_grid_for_2d_data():
    ds = synthetic_dataset(n_features=2, n_classes=2)
    cfg = StudyConfig(name="2d", hidden=(8, 4), n_epochs=1, batch_size=40, seeds=(0, 1),
                      methods=(MethodConfig("l1", l1=1e-3),))
    trainer = Trainer(cfg, ds)
    trainer.train_epoch()
    a = trainer.analysis()
    n_weights = 2 * 8 + 8 * 4 + 4 * 2
    assert a["weight_hist"].shape == (2, len(a["weight_hist_edges"]) - 1)
    assert a["weight_hist"].sum(1).tolist() == [n_weights, n_weights]
    assert a["weight_hist_edges"][0] == 0
    assert a["hidden_mean_activation"].shape == (2, 8)
    G = a["grid_xx"].shape[0]
    assert a["grid_yy"].shape == (G, G) and a["grid_probs"].shape == (2, G, G)
    assert ((a["grid_probs"] >= 0) & (a["grid_probs"] <= 1)).all()
    assert a["x_train"].shape == (240, 2)


def test_user_mistakes_raise_one_line_errors(small_dataset):
    cfg = _all_methods_study(n_epochs=1)
    bad_labels = dataclasses.replace(small_dataset, y_val=small_dataset.y_val + 5)
    with pytest.raises(ReglabError, match="labels must be in"):
        Trainer(cfg, bad_labels)
    no_val = dataclasses.replace(small_dataset, x_val=small_dataset.x_val[:0], y_val=small_dataset.y_val[:0])
    with pytest.raises(ReglabError, match="early stopping needs a validation split"):
        Trainer(cfg, no_val)
    if not torch.cuda.is_available():
        with pytest.raises(ReglabError, match="no CUDA"):
            Trainer(cfg.replace(device="cuda"), small_dataset)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_training_on_cuda_matches_the_cpu_for_variants_without_dropout(small_dataset):
    cfg = _all_methods_study(n_epochs=2)
    cpu, gpu = Trainer(cfg, small_dataset), Trainer(cfg.replace(device="cuda"), small_dataset)
    for _ in range(2):
        rc, rg = cpu.train_epoch(), gpu.train_epoch()
    no_dropout = [v for v, m, _ in cfg.variants() if not m.uses_dropout]
    assert np.allclose(rc.loss_data[:, no_dropout], rg.loss_data[:, no_dropout], rtol=1e-4, atol=1e-5)
    for p, q in zip(cpu.model.parameters(), gpu.model.parameters()):
        assert _rel_err(q[no_dropout].cpu(), p[no_dropout]) < 1e-4
    assert np.isfinite(rg.metrics["val_loss"]).all()
    resumed = Trainer(cfg.replace(device="cuda"), small_dataset)
    resumed.load_state_dict(gpu.state_dict())
    assert resumed.epoch == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_tf32_products_on_cuda_train_close_to_float32_and_leave_the_global_setting_alone(small_dataset):
    cfg = _all_methods_study(n_epochs=2).replace(device="cuda")
    before = torch.backends.cuda.matmul.fp32_precision
    exact, tf32 = Trainer(cfg, small_dataset), Trainer(cfg.replace(matmul_dtype="tf32"), small_dataset)
    for _ in range(2):
        re_, rt = exact.train_epoch(), tf32.train_epoch()
    assert torch.backends.cuda.matmul.fp32_precision == before
    assert np.allclose(re_.metrics["val_loss"], rt.metrics["val_loss"], rtol=2e-2)


def test_tf32_products_are_switched_on_inside_the_steps_only():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with trainer_module._tf32_products(True):
        assert matmul.fp32_precision == "tf32"
    assert matmul.fp32_precision == before
    with trainer_module._tf32_products(False):
        assert matmul.fp32_precision == before


def test_tf32_products_are_refused_off_cuda_in_one_line():
    with pytest.raises(ReglabError, match="exists only on CUDA GPUs.*Fix") as e:
        _all_methods_study().replace(matmul_dtype="tf32")
    assert "\n" not in str(e.value)
    assert _all_methods_study().replace(matmul_dtype="tf32", device="cuda").matmul_dtype == "tf32"


@pytest.mark.slow
def test_the_six_table9_methods_train_together_on_mnist(data_dir):
    x, y, xs, ys = mnist_tensors(data_dir, n_train=12_000)
    ds = Dataset("mnist", x[:10_000], y[:10_000], x[10_000:], y[10_000:], xs, ys, n_classes=10)
    methods = (
        MethodConfig("l2", l2=1e-4),
        MethodConfig("l2+l1_late", l2=1e-4, l1=1e-5, l1_start=0.8),
        MethodConfig("l2+kl", l2=1e-4, kl_beta=1e-3, kl_rho=0.1, kl_ema=0.9),
        MethodConfig("max_norm", max_norm=3.0),
        MethodConfig("dropout+l2", dropout_input=0.2, dropout_hidden=0.5, l2=1e-4),
        MethodConfig("dropout+max_norm", dropout_input=0.2, dropout_hidden=0.5, max_norm=3.0),
    )
    cfg = StudyConfig(name="mnist-small", hidden=(128,), n_epochs=2, batch_size=100, seeds=(0, 1), methods=methods)
    trainer = Trainer(cfg, ds)
    while not trainer.done:
        rec = trainer.train_epoch()
    assert (rec.metrics["test_error"] < 0.12).all(), rec.metrics["test_error"]
    assert not rec.metrics["diverged"].any()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_net_without_hidden_layers_with_input_dropout_equals_a_plain_torch_run(optimizer, small_dataset):
    method = MethodConfig("softmax-regression", l2=1e-2, dropout_input=0.3)
    cfg = _study(method, optimizer, hidden=())
    ds = _dataset_as(small_dataset, torch.float64)
    trainer = Trainer(cfg, ds, dtype=torch.float64)
    for _ in range(N_EPOCHS):
        trainer.train_epoch()
    ref = ReferenceRun(cfg, cfg.methods[1], SEEDS[1], ds.x_train, ds.y_train, 3, dtype=torch.float64)
    for _ in range(N_EPOCHS):
        ref.train_epoch()
    assert _rel_err(trainer.model.weights[0][3], ref.linears[0].weight.detach().T) <= 1e-10
    assert np.isnan(trainer._evaluate(ds.x_val, ds.y_val)["mean_activation"]).all()


def test_lr_and_momentum_metrics_are_each_variants_own_schedule_values(small_dataset):
    ramped = MethodConfig("ramped", lr=0.1, lr_schedule="inverse_t", lr_decay_steps=10,
                          momentum=0.9, momentum_initial=0.5, momentum_ramp_steps=100)
    cfg = StudyConfig(name="sched", hidden=(8,), n_epochs=2, batch_size=24, seeds=(0, 1),
                      methods=(MethodConfig("flat", lr=0.05), ramped))
    rec = Trainer(cfg, small_dataset).train_epoch()          # 10 steps: the last is step 10
    assert rec.metrics["lr"].tolist() == pytest.approx([0.05, 0.05, 0.1 / 1.9, 0.1 / 1.9])
    assert rec.metrics["momentum"].tolist() == pytest.approx([0.9, 0.9, 0.5 + 0.4 * 9 / 100, 0.5 + 0.4 * 9 / 100])


def _stopping_study(n_epochs: int = 14) -> StudyConfig:
    """Early-stopping variants (one with a KL moving average) that stop at different epochs beside
    variants that run to the end, with dropout among them."""
    es = MethodConfig("es", lr=0.2, early_stopping=True, patience=1, monitor="val_loss")
    kl_es = MethodConfig("kl+es", lr=0.2, kl_beta=0.02, kl_rho=0.2, kl_ema=0.9, early_stopping=True, patience=2,
                         monitor="val_loss")
    return StudyConfig(name="compact", hidden=(32, 16), n_epochs=n_epochs, batch_size=20, seeds=(0, 1),
                       methods=(MethodConfig("plain", lr=0.2), es,
                                MethodConfig("kl", lr=0.2, kl_beta=0.02, kl_rho=0.2, kl_ema=0.9), kl_es,
                                MethodConfig("dropout", lr=0.2, dropout_hidden=0.3)))


def test_variants_that_stop_leave_the_batch_and_every_variant_still_trains_as_if_alone():
    ds = _overfitting_dataset()
    cfg = _stopping_study()
    trainer = Trainer(cfg, ds)
    live_sizes = []
    while not trainer.done:
        trainer.train_epoch()
        active = np.flatnonzero([trainer.stop_epoch[v] is None for v in range(trainer.n_variants)])
        assert trainer.live_variants.tolist() == active.tolist()     # the step computes only these
        live_sizes.append(len(trainer.live_variants))
    assert min(live_sizes) < trainer.n_variants, "some early-stopping variants should stop"
    assert min(live_sizes) >= 6                                        # plain, kl and dropout run to the end
    summary = trainer.final_summary()["variants"]
    for k, method in enumerate(cfg.methods):
        alone = Trainer(cfg.replace(methods=(method,)), ds)
        while not alone.done:
            alone.train_epoch()
        for i, row in enumerate(alone.final_summary()["variants"]):
            v = 2 * k + i
            assert summary[v]["stop_epoch"] == row["stop_epoch"] and summary[v]["best_epoch"] == row["best_epoch"]
            assert summary[v]["test_error_last"] == pytest.approx(row["test_error_last"], abs=1e-12)
            # the final pass over the training split covers the variants that left the batch too
            assert summary[v]["train_error_final"] == pytest.approx(row["train_error_final"], abs=1e-12)
            assert np.isfinite(summary[v]["train_error_final"])
            for p, q in zip(trainer.model.parameters(), alone.model.parameters()):
                assert _rel_err(p[v], q[i]) < 1e-6


def _train_saving_every_epoch(cfg: StudyConfig, ds: Dataset) -> tuple[Trainer, list, list[tuple[int, bytes]]]:
    """A whole run, with (live variants, state_dict bytes) after every epoch."""
    straight = Trainer(cfg, ds)
    records, states = [], []
    while not straight.done:
        records.append(straight.train_epoch())
        buffer = io.BytesIO()
        torch.save(straight.state_dict(), buffer)
        states.append((len(straight.live_variants), buffer.getvalue()))
    return straight, records, states


def _assert_resume_continues_bit_identically(cfg, ds, straight: Trainer, records: list, state: bytes,
                                             epoch: int) -> Trainer:
    resumed = Trainer(cfg, ds)
    resumed.load_state_dict(torch.load(io.BytesIO(state), weights_only=False))
    for expected in records[epoch + 1:]:
        assert _same_records(resumed.train_epoch(), expected)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(a, b)
    assert resumed.final_summary() == straight.final_summary()
    return resumed


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_after_the_batch_was_compacted_continues_bit_identically(optimizer):
    ds = _overfitting_dataset()
    cfg = _stopping_study(n_epochs=10).replace(optimizer=optimizer)
    if optimizer == "adam":
        cfg = cfg.replace(methods=tuple(dataclasses.replace(m, lr=0.01) for m in cfg.methods))
    straight, records, states = _train_saving_every_epoch(cfg, ds)
    compacted = [e for e, (n_live, _) in enumerate(states) if n_live < straight.n_variants]
    assert compacted, "some early-stopping variants should stop"
    for epoch in (compacted[0], compacted[-1]):            # right after the first compaction, and later
        n_live, state = states[epoch]
        resumed = Trainer(cfg, ds)
        resumed.load_state_dict(torch.load(io.BytesIO(state), weights_only=False))
        assert len(resumed.live_variants) == n_live
        _assert_resume_continues_bit_identically(cfg, ds, straight, records, state, epoch)


def test_the_weight_norm_metric_is_the_l2_norm_of_every_weight_without_biases(small_dataset):
    trainer = Trainer(_all_methods_study(n_epochs=1), small_dataset)
    rec = trainer.train_epoch()
    for v in range(trainer.n_variants):
        weights = torch.cat([w[v].flatten().double() for w in trainer.model.weights])
        assert rec.metrics["weight_norm"][v] == pytest.approx(float(torch.linalg.norm(weights)), rel=1e-12)


def test_the_final_train_error_is_a_clean_pass_over_the_training_split_without_dropout(small_dataset):
    methods = (MethodConfig("plain", lr=0.05), MethodConfig("drop", lr=0.05, dropout_input=0.2, dropout_hidden=0.5))
    cfg = StudyConfig(name="gap", hidden=(16, 8), n_epochs=3, batch_size=24, seeds=(0, 1), methods=methods)
    trainer = Trainer(cfg, small_dataset)
    while not trainer.done:
        trainer.train_epoch()
    rows = trainer.final_summary()["variants"]
    x, y = small_dataset.x_train, small_dataset.y_train.long()
    for v in range(cfg.n_variants):
        model = torch.nn.Sequential()
        for l, (w, b) in enumerate(zip(trainer.model.weights, trainer.model.biases)):
            linear = torch.nn.Linear(*w.shape[1:])
            with torch.no_grad():
                linear.weight.copy_(w[v].T)
                linear.bias.copy_(b[v, 0])
            model.append(linear)
            if l < len(trainer.model.weights) - 1:
                model.append(torch.nn.ReLU())
        with torch.no_grad():
            logits = model(x)
        assert rows[v]["train_error_final"] == pytest.approx(float((logits.argmax(1) != y).double().mean()), abs=1e-12)
        assert rows[v]["train_loss_final"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)),
                                                            rel=1e-5)


def test_final_summary_and_analysis_share_one_pass_over_the_training_split_of_the_current_weights(
        small_dataset, monkeypatch):
    cfg = StudyConfig(name="once", hidden=(16, 8), n_epochs=2, batch_size=24, seeds=(0, 1),
                      methods=(MethodConfig("plain", lr=0.05), MethodConfig("l2", lr=0.05, l2=1e-3)))
    trainer = Trainer(cfg, small_dataset)
    trainer.train_epoch()
    after_one = trainer.state_dict()
    trainer.train_epoch()
    passes = []
    evaluate = BatchedMLP.evaluate

    def counted(model, x, y, chunk):
        passes.append(int(x.shape[0]))
        return evaluate(model, x, y, chunk)

    monkeypatch.setattr(BatchedMLP, "evaluate", counted)
    rows = trainer.final_summary()["variants"]
    act = trainer.analysis()["hidden_mean_activation"]
    assert passes == [trainer.n_train]
    x = small_dataset.x_train
    for v in range(cfg.n_variants):   # each reads the weights the variants end with
        h = torch.relu(x @ trainer.model.weights[0][v] + trainer.model.biases[0][v])
        np.testing.assert_allclose(act[v], h.mean(0).double().numpy(), rtol=1e-5, atol=1e-7)
    # loading another state: the next summary is a new pass over that state's weights
    trainer.load_state_dict(after_one)
    loaded = trainer.final_summary()["variants"]
    assert passes == [trainer.n_train, trainer.n_train]
    assert [r["train_loss_final"] for r in loaded] != [r["train_loss_final"] for r in rows]


@pytest.mark.parametrize("noise", [dict(dropout_input=0.3, dropout_hidden=0.5),
                                   dict(gaussian_dropout_input=0.3, gaussian_dropout_hidden=0.5),
                                   dict(dropconnect=0.5)], ids=["dropout", "gaussian_dropout", "dropconnect"])
def test_train_time_noise_is_off_at_evaluation(noise, small_dataset):
    """Evaluation is one deterministic pass on the plain weights: the loss of a plain torch forward."""
    cfg = StudyConfig(name="noise", data=DataConfig(name="moons"), hidden=(16,), n_epochs=1, batch_size=24,
                      seeds=(0,), methods=(MethodConfig("noisy", **noise),))
    trainer = Trainer(cfg, small_dataset, dtype=torch.float64)
    trainer.train_epoch()
    first = trainer._evaluate(small_dataset.x_val.double(), small_dataset.y_val)
    again = trainer._evaluate(small_dataset.x_val.double(), small_dataset.y_val)
    assert first["loss"].tolist() == again["loss"].tolist()      # no randomness in the evaluation pass
    w, b = trainer.model.weights, trainer.model.biases
    h = torch.relu(small_dataset.x_val.double() @ w[0][0] + b[0][0])
    expected = torch.nn.functional.cross_entropy(h @ w[1][0] + b[1][0], small_dataset.y_val)
    assert first["loss"][0] == pytest.approx(float(expected), rel=1e-12)
