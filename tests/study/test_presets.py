"""Presets: names, the six Table 9 methods, overrides, tiny mode."""

import dataclasses

import pytest

from reglab.config import StudyConfig
from reglab.errors import ReglabError
from reglab.study import presets


# presets that are one StudyConfig (the data-size preset is a sweep of them: tested below)
SINGLE = [(s, p) for s, ps in presets.STUDIES.items() for p, make in ps.items() if isinstance(make(), StudyConfig)]


@pytest.mark.parametrize("study,preset", SINGLE)
def test_every_preset_builds_a_valid_study_and_a_smoke_version(study, preset):
    cfg = presets.get(study, preset)
    assert isinstance(cfg, StudyConfig)
    smoke = presets.get(study, preset, smoke=True)
    assert smoke.n_epochs <= 2
    if smoke.data.is_image:
        assert smoke.data.subset_per_class * 10 <= 500
    else:
        assert smoke.data.n_points <= 500
    assert [m.name for m in smoke.methods] == [m.name for m in cfg.methods]


@pytest.mark.parametrize("preset", list(presets.STUDIES["mnist"]))
def test_mnist_presets_have_the_six_table9_methods_in_order(preset):
    cfg = presets.get("mnist", preset)
    cfg = getattr(cfg, "base", cfg)       # the data-size study: its base study, less its reference "none"
    if preset == "datasize":
        assert cfg.methods[0].name == "none" and cfg.methods[0].l2 == cfg.methods[0].l1 == 0
        assert not cfg.methods[0].uses_dropout and not cfg.methods[0].uses_max_norm and cfg.methods[0].kl_beta == 0
        cfg = cfg.replace(methods=cfg.methods[1:])
    assert [m.name for m in cfg.methods] == ["l2", "l2+l1_late", "l2+kl", "max_norm", "dropout+l2",
                                             "dropout+max_norm"]
    by = {m.name: m for m in cfg.methods}
    assert by["l2"].l2 > 0 and by["l2"].l1 == 0 and not by["l2"].uses_dropout and not by["l2"].uses_max_norm
    assert by["l2+l1_late"].l1 > 0 and 0 < by["l2+l1_late"].l1_start < 1 and by["l2+l1_late"].l2 > 0
    assert by["l2+kl"].kl_beta > 0 and by["l2+kl"].l2 > 0
    assert by["max_norm"].uses_max_norm and by["max_norm"].l2 == 0 and not by["max_norm"].uses_dropout
    assert by["dropout+l2"].uses_dropout and by["dropout+l2"].l2 > 0 and not by["dropout+l2"].uses_max_norm
    assert by["dropout+max_norm"].uses_dropout and by["dropout+max_norm"].uses_max_norm
    assert by["dropout+max_norm"].l2 == 0


def test_the_default_study_is_mnist_quick_with_three_seeds():
    cfg = presets.get()
    assert cfg.name == "mnist-quick" and cfg.seeds == (0, 1, 2) and cfg.device == "cpu"


def test_the_seed_preset_is_one_hidden_layer_of_32_for_50_epochs():
    cfg = presets.get("mnist", "seed")
    assert cfg.hidden == (32,) and cfg.n_epochs == 50


def test_the_table9_cpu_preset_is_the_validated_512_512_net_for_50_epochs():
    """Values as docs/studies.md's search table picked them on the validation split."""
    cfg = presets.get("mnist", "table9-cpu")
    assert cfg.hidden == (512, 512) and cfg.n_epochs == 50 and cfg.batch_size == 100 and cfg.device == "cpu"
    assert cfg.seeds == (0, 1, 2) and cfg.matmul_dtype == "float32"
    by = {m.name: m for m in cfg.methods}
    assert all(m.momentum == 0.9 and m.lr_decay_steps == 7500 for m in cfg.methods)
    # round 4 of the search: each method's starting rate
    assert {m.name: m.lr for m in cfg.methods} == {"l2": 0.2, "l2+l1_late": 0.1, "l2+kl": 0.2, "max_norm": 0.3,
                                                   "dropout+l2": 0.1, "dropout+max_norm": 0.1}
    assert by["max_norm"].max_norm == 1.5 and by["dropout+max_norm"].max_norm == 2.0
    assert (by["dropout+l2"].dropout_input, by["dropout+l2"].dropout_hidden) == (0.1, 0.3)
    assert (by["dropout+max_norm"].dropout_input, by["dropout+max_norm"].dropout_hidden) == (0.1, 0.3)
    assert by["l2+l1_late"].l1 == 1e-6          # round 3 of the validation search


def test_the_paper_preset_is_the_papers_net_and_budget():
    cfg = presets.get("mnist", "paper")
    assert cfg.hidden == (1024, 1024, 2048) and cfg.batch_size == 100
    updates = cfg.n_epochs * 50_000 // cfg.batch_size
    assert 0.5e6 <= updates <= 2e6
    by = {m.name: m for m in cfg.methods}
    assert by["dropout+max_norm"].dropout_input == 0.2 and by["dropout+max_norm"].dropout_hidden == 0.5


def test_the_pointcloud_study_has_its_four_methods():
    cfg = presets.get("pointcloud")
    assert [m.name for m in cfg.methods] == ["no_penalty", "l1", "l2", "early_stopping"]
    by = {m.name: m for m in cfg.methods}
    assert by["no_penalty"].l1 == by["no_penalty"].l2 == 0 and not by["no_penalty"].early_stopping
    assert by["early_stopping"].early_stopping and by["early_stopping"].l2 == 0
    assert not cfg.data.is_image


def test_overrides_change_seeds_dataset_resolution_epochs_and_name():
    cfg = presets.get("mnist", "seed", seeds=5, dataset="fashion-mnist", resolution=7, epochs=3, device="cuda")
    assert cfg.seeds == (0, 1, 2, 3, 4)
    assert cfg.data.name == "fashion-mnist" and cfg.data.resolution == 7
    assert cfg.n_epochs == 3 and cfg.device == "cuda"
    assert cfg.name == "fashion-mnist-seed-7px"


@pytest.mark.parametrize("kwargs,message", [
    (dict(study="cifar"), "unknown study 'cifar'; allowed: mnist, pointcloud"),
    (dict(study="mnist", preset="huge"), "unknown preset 'huge' for study 'mnist'; allowed: quick, seed, table9-cpu, paper, datasize"),
    (dict(study="mnist", dataset="moons"), "--dataset must be one of mnist, fashion-mnist"),
    (dict(study="pointcloud", resolution=7), "--resolution applies to image datasets only"),
    (dict(study="mnist", seeds=0), "--seeds must be a whole number from 1 to 10,000; got 0"),
    (dict(study="mnist", epochs=-2), "--epochs must be a whole number >= 1; got -2"),
])
def test_bad_overrides_are_one_line_naming_the_option(kwargs, message):
    with pytest.raises(ReglabError) as e:
        presets.get(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_datasize_preset_trains_every_size_for_the_same_number_of_updates():
    ds = presets.get("mnist", "datasize")
    assert ds.base.seeds == (0, 1, 2) and ds.reference == "none"
    sizes = {}
    for k in ds.train_per_class:
        cfg = ds.size_config(k, 50_000, 10)
        n_distinct = k * 10 if k else 50_000
        per_epoch = n_distinct * cfg.data.train_repeat
        sizes[n_distinct] = cfg.n_epochs * per_epoch // cfg.batch_size
        assert cfg.data.train_per_class == k and cfg.data.subset_per_class == 0
    assert sorted(sizes) == [500, 1000, 2000, 5000, 10_000, 50_000]
    assert set(sizes.values()) == {ds.n_steps}


def test_the_datasize_preset_takes_dataset_and_seeds_and_refuses_epochs():
    ds = presets.get("mnist", "datasize", dataset="fashion-mnist", seeds=2)
    assert ds.name == "fashion-mnist-datasize" and ds.base.data.name == "fashion-mnist" and ds.base.seeds == (0, 1)
    with pytest.raises(ReglabError, match="--epochs does not apply"):
        presets.get("mnist", "datasize", epochs=3)
    smoke = presets.get("mnist", "datasize", smoke=True)
    assert smoke.base.data.subset_per_class == 30 and max(smoke.train_per_class) <= 30


def test_fashion_mnist_datasize_gets_its_own_validated_values_and_mnist_keeps_its_own():
    def by_method(ds):
        return {m.name: m for m in ds.base.methods}
    mnist = by_method(presets.get("mnist", "datasize"))
    fashion = by_method(presets.get("mnist", "datasize", dataset="fashion-mnist"))
    # MNIST's search (docs/studies.md): lr 0.1 for every method, L2 1e-3
    assert {m.lr for m in mnist.values()} == {0.1} and mnist["l2"].l2 == 1e-3
    # Fashion-MNIST's search: lr 0.03 for every method, L2 1e-4; the rest as on MNIST
    assert {m.lr for m in fashion.values()} == {0.03} and fashion["l2"].l2 == 1e-4
    assert set(fashion) == set(mnist)
    for name in ("l2+l1_late", "l2+kl", "max_norm", "dropout+l2", "dropout+max_norm"):
        assert dataclasses.replace(fashion[name], lr=0.1) == mnist[name]


def test_fashion_mnist_quick_gets_its_own_validated_values_and_mnist_keeps_its_own():
    mnist = {m.name: m for m in presets.get("mnist", "quick").methods}
    fashion = {m.name: m for m in presets.get("mnist", "quick", dataset="fashion-mnist").methods}
    assert set(fashion) == set(mnist)
    # MNIST's search (docs/studies.md): lr 0.1, max-norm 3, dropout 0.1/0.25
    assert {m.lr for m in mnist.values()} == {0.1} and mnist["max_norm"].max_norm == 3.0
    assert (mnist["dropout+l2"].dropout_input, mnist["dropout+l2"].dropout_hidden) == (0.1, 0.25)
    # Fashion-MNIST's search: lr 0.03, max-norm 1.5, dropout 0/0.1 (hidden units only); the rest as on MNIST
    assert {m.lr for m in fashion.values()} == {0.03} and fashion["max_norm"].max_norm == 1.5
    for name in ("dropout+l2", "dropout+max_norm"):
        assert (fashion[name].dropout_input, fashion[name].dropout_hidden) == (0.0, 0.1)
    for name in ("l2", "l2+l1_late", "l2+kl"):
        assert dataclasses.replace(fashion[name], lr=0.1) == mnist[name]
    assert dataclasses.replace(fashion["dropout+max_norm"], lr=0.1, dropout_input=0.1, dropout_hidden=0.25) \
        == mnist["dropout+max_norm"]


@pytest.mark.parametrize("preset,dataset,note", [
    ("quick", "fashion-mnist", False), ("datasize", "fashion-mnist", False), (None, "fashion-mnist", False),
    ("seed", "fashion-mnist", True), ("table9-cpu", "fashion-mnist", True), ("paper", "fashion-mnist", True),
    ("seed", "mnist", False), ("seed", None, False)])
def test_only_a_preset_without_values_of_the_datasets_own_gets_the_note(preset, dataset, note):
    line = presets.values_note("mnist", preset, dataset)
    assert (line is not None) == note
    if note:
        assert line.startswith("reglab: note:") and "\n" not in line
        assert f"--preset {preset}'s values were validated on MNIST, not on {dataset}" in line
    assert presets.values_note("pointcloud", preset, "moons") is None


def test_a_size_that_does_not_fit_the_epoch_is_one_clear_error():
    ds = presets.get("mnist", "datasize")
    with pytest.raises(ReglabError, match="multiple of the subset size"):
        ds.size_config(7, 50_000, 10)
    with pytest.raises(ReglabError, match="not a whole number of epochs"):
        ds.replace(n_steps=3001).size_config(0, 50_000, 10)


def test_the_l1_mass_at_init_is_the_sum_of_abs_weights_the_engine_initialises():
    from reglab.engine.mlp import init_parameters
    sizes = (784, 256, 256, 10)
    weights, _ = init_parameters(list(sizes), 0, "he_normal")
    sampled = sum(float(w.abs().sum()) for w in weights)
    assert presets.l1_mass_at_init(sizes) == pytest.approx(sampled, rel=5e-3)


def test_the_paper_presets_l1_is_the_quick_value_carried_by_the_weight_mass_rule():
    quick, paper = (784, 256, 256, 10), (784, 1024, 1024, 2048, 10)
    # E sum|w| ratio: (256*28 + 256*16 + 10*16) / (1024*28 + 1024*32 + 2048*32 + 10*sqrt(2048)) = 0.0897
    ratio = (256 * 28 + 256 * 16 + 10 * 16) / (1024 * 28 + 1024 * 32 + 2048 * 32 + 10 * 2048 ** 0.5)
    assert presets.l1_for_net(1e-4, quick, paper) == float(f"{1e-4 * ratio:.0e}") == 9e-6
    by = {m.name: m for m in presets.get("mnist", "paper").methods}
    assert by["l2+l1_late"].l1 == presets.PAPER_L1 == 9e-6
    assert presets.get("mnist", "quick").methods[1].l1 == 1e-4     # the quick net keeps its validated value


def test_the_pointcloud_datasize_preset_varies_the_number_of_training_points_at_equal_updates():
    ds = presets.get("pointcloud", "datasize")
    assert ds.reference == "no_penalty" and ds.base.data.n_points == 4000 and len(ds.base.seeds) == 5
    steps = {}
    for k in ds.train_per_class:
        cfg = ds.size_config(k, 2000, 2)
        n = k * 2 if k else 2000
        steps[n] = cfg.n_epochs * n * cfg.data.train_repeat // cfg.batch_size
    assert sorted(steps) == [50, 100, 200, 500, 2000] and set(steps.values()) == {5000}
    es = next(m for m in ds.base.methods if m.early_stopping)
    assert es.patience * 2000 // ds.base.batch_size == 500   # the default study's 50 epochs x 10 updates


def test_the_docs_example_of_the_newer_built_ins_is_the_quick_preset_plus_one_method_each():
    from pathlib import Path
    from reglab.engine.registry import load_toml
    root = Path(__file__).resolve().parents[2] / "docs" / "examples"
    more = load_toml(root / "quick-more-regularizers" / "study.toml")
    quick = presets.get("mnist", "quick")
    assert more.methods[:6] == quick.methods          # Table 9's six exactly as the default study runs them
    assert (more.hidden, more.n_epochs, more.seeds, more.data) == (quick.hidden, quick.n_epochs, quick.seeds,
                                                                   quick.data)
    newer = {m.name: m for m in more.methods[6:]}
    assert newer["gaussian_dropout+max_norm"].uses_gaussian_dropout
    assert newer["l2+orthogonality"].uses_orthogonality and newer["l2+label_smoothing"].uses_label_smoothing
    assert newer["decoupled_weight_decay"].uses_decoupled_weight_decay and newer["decoupled_weight_decay"].l2 == 0
    assert newer["dropconnect"].uses_dropconnect and not newer["dropconnect"].uses_dropout
    beside = load_toml(root / "quick-more-regularizers" / "dropconnect-beside-l2.toml")
    assert beside.methods == (quick.methods[0], newer["dropconnect"]) and beside.seeds == quick.seeds
    for search in sorted((root / "builtins-quick-search").glob("*.toml")) + \
            sorted((root / "fashion-quick-search").glob("*.toml")):
        cfg = load_toml(search)                        # each search round's file is a valid study
        assert cfg.hidden == quick.hidden and cfg.n_epochs == quick.n_epochs and cfg.seeds == (0,)


def test_the_table9_cpu_search_rounds_are_valid_studies_and_round5_controls_are_the_presets_methods():
    """docs/studies.md, round 5: its control rows are the preset's dropout methods (equal to the preset's
    seeds 0-2 bit for bit), beside candidates under the paper's momentum ramp."""
    from pathlib import Path
    from reglab.engine.registry import load_toml
    root = Path(__file__).parents[2] / "docs" / "examples" / "cpu-table9-search"
    preset = presets.get("mnist", "table9-cpu")
    for search in sorted(root.glob("round*.toml")):
        cfg = load_toml(search)
        assert cfg.hidden == preset.hidden                 # each round is a valid study of the preset's net
    round5 = load_toml(root / "round5.toml")
    assert round5.seeds == preset.seeds
    by_name = {m.name: m for m in round5.methods}
    for name in ("dropout+l2", "dropout+max_norm"):
        assert dataclasses.replace(by_name[f"{name} preset"], name=name) == \
            next(m for m in preset.methods if m.name == name)
    assert {m.momentum_initial for m in round5.methods} == {-1.0, 0.5}       # candidates ramp the momentum


def test_the_wide_probe_is_table9_cpu_with_the_hidden_layers_doubled():
    """docs/studies.md, "A wider net": l2, dropout+l2 and dropout+max_norm with table9-cpu's values, on
    784-1024-1024-10, the preset's budget, 8 seeds; nothing else differs from the preset."""
    from pathlib import Path
    from reglab.engine.registry import load_toml
    wide = load_toml(Path(__file__).parents[2] / "docs" / "examples" / "cpu-table9-wide" / "wide-1024.toml")
    preset = presets.get("mnist", "table9-cpu")
    assert wide.hidden == (1024, 1024) and tuple(2 * h for h in preset.hidden) == wide.hidden
    assert wide.seeds == tuple(range(8))
    assert dataclasses.replace(wide, name=preset.name, hidden=preset.hidden, seeds=preset.seeds,
                               methods=preset.methods) == preset
    by_name = {m.name: m for m in preset.methods}
    assert [m.name for m in wide.methods] == ["l2", "dropout+l2", "dropout+max_norm"]
    assert all(m == by_name[m.name] for m in wide.methods)


def test_a_per_method_rate_must_name_a_table9_method():
    q = {**presets.TABLE9_CPU, "lr_by_method": {"l2 ": 0.2}}
    with pytest.raises(ValueError, match=r"lr_by_method names no Table 9 method: \['l2 '\]"):
        presets._sgd_table9_methods(q)


def _load_docs_script(name):
    """docs/examples/`name`.py (`name` may hold a subfolder: "cpu-table9-probe/gap") as a module."""
    import importlib.util
    from pathlib import Path
    script = Path(__file__).parents[2] / "docs" / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_holm_per_epoch_script_matches_scipy_and_statsmodels(tmp_path):
    """docs/examples/holm_per_epoch.py (docs/studies.md's per-epoch significance of table9-cpu's tiers)
    against independent references: scipy's paired t-test, statsmodels' Holm over all 15 pairs of each
    epoch; a stopped variant's row (active 0) is left out of its pairs."""
    import numpy as np
    import pandas as pd
    from scipy import stats
    multitest = pytest.importorskip("statsmodels.stats.multitest")

    methods = ["l2", "l2+l1_late", "l2+kl", "max_norm", "dropout+l2", "dropout+max_norm"]
    rng = np.random.default_rng(11)
    (tmp_path / "metrics").mkdir()
    errors = {}
    for epoch in (1, 2):
        shift = {"dropout+l2": -0.004 * epoch, "dropout+max_norm": -0.005 * epoch}
        rows = []
        for v, (m, s) in enumerate((m, s) for m in methods for s in range(6)):
            e = 0.016 + shift.get(m, 0.0) + rng.normal(0, 0.0008)
            active = 0 if (epoch == 2 and m == "l2" and s == 5) else 1
            errors[epoch, m, s] = (e, active)
            rows.append(dict(epoch=epoch, variant=v, method=m, seed=s, test_error=e, val_error=e, active=active))
        pd.DataFrame(rows).to_csv(tmp_path / "metrics" / f"epoch-{epoch:05d}.csv", index=False)

    module = _load_docs_script("holm_per_epoch")
    text = module.table(tmp_path, every=1)
    body = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| epoch")]
    header = [c.strip() for c in text.splitlines()[2].strip("|").split("|")][1:]
    assert len(body) == 2 and len(header) == 9
    for line, epoch in zip(body, (1, 2)):
        def seeds_of(m):
            return {s: errors[epoch, m, s][0] for s in range(6) if errors[epoch, m, s][1]}
        pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
        p = []
        for a, b in pairs:
            common = sorted(set(seeds_of(a)) & set(seeds_of(b)))
            p.append(stats.ttest_rel([seeds_of(a)[s] for s in common], [seeds_of(b)[s] for s in common]).pvalue)
        p_holm = dict(zip(pairs, multitest.multipletests(p, method="holm")[1]))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == str(epoch)
        for cell, name in zip(cells[1:], header):
            a, b = name.split(" - ")
            common = sorted(set(seeds_of(a)) & set(seeds_of(b)))
            d = np.mean([seeds_of(a)[s] - seeds_of(b)[s] for s in common])
            q = p_holm.get((a, b), p_holm.get((b, a)))
            assert cell == f"{100 * d:+.2f} (p {q:.2g})" + (" *" if q < 0.05 else "")
    assert "dropout+max_norm below l2: significant at every epoch from 1 on" in text
    assert "max_norm below l2: not significant at the last epoch" in text


def test_the_holm_per_epoch_script_by_seed_count_matches_scipy_and_statsmodels(tmp_path):
    """--by-seeds: at one epoch, the family of all 15 pairs over the run's first n seeds (ascending seed
    numbers, whatever order the rows come in), for n = 3 .. all, against scipy's paired t-test and
    statsmodels' Holm; and the smallest n from which a pair stays significant."""
    import numpy as np
    import pandas as pd
    from scipy import stats
    multitest = pytest.importorskip("statsmodels.stats.multitest")

    methods = ["l2", "l2+l1_late", "l2+kl", "max_norm", "dropout+l2", "dropout+max_norm"]
    seeds = [7, 0, 3, 12, 5, 1, 9, 4]                            # not in order: n counts ascending seeds
    rng = np.random.default_rng(5)
    shift = {"dropout+l2": -0.0015, "dropout+max_norm": -0.004}
    errors = {}
    (tmp_path / "metrics").mkdir()
    for epoch in (1, 2):
        rows = []
        for v, (m, s) in enumerate((m, s) for m in methods for s in seeds):
            e = 0.016 + shift.get(m, 0.0) + rng.normal(0, 0.0008)
            errors[epoch, m, s] = e
            rows.append(dict(epoch=epoch, variant=v, method=m, seed=s, test_error=e, active=1))
        pd.DataFrame(rows).to_csv(tmp_path / "metrics" / f"epoch-{epoch:05d}.csv", index=False)

    module = _load_docs_script("holm_per_epoch")
    for epoch in (1, None):                                     # None: the last epoch, 2
        text = module.seeds_table(tmp_path, epoch=epoch)
        read = 2 if epoch is None else epoch
        assert text.splitlines()[0].startswith(f"test_error at epoch {read}, the run's first n seeds")
        header = [c.strip() for c in text.splitlines()[2].strip("|").split("|")][1:]
        body = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| seeds")]
        assert [int(line.strip("|").split("|")[0]) for line in body] == list(range(3, len(seeds) + 1))
        pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
        significant_from = {}
        for line in body:
            cells = [c.strip() for c in line.strip("|").split("|")]
            n = int(cells[0])
            first = sorted(seeds)[:n]
            p = [stats.ttest_rel([errors[read, a, s] for s in first], [errors[read, b, s] for s in first]).pvalue
                 for a, b in pairs]
            p_holm = dict(zip(pairs, multitest.multipletests(p, method="holm")[1]))
            for cell, name in zip(cells[1:], header):
                a, b = name.split(" - ")
                d = np.mean([errors[read, a, s] - errors[read, b, s] for s in first])
                q = p_holm.get((a, b), p_holm.get((b, a)))
                assert cell == f"{100 * d:+.2f} (p {q:.2g})" + (" *" if q < 0.05 else "")
                below = d < 0 and q < 0.05
                if below and (a, b) not in significant_from:
                    significant_from[a, b] = n
                elif not below:
                    significant_from.pop((a, b), None)
        for name in header:
            a, b = name.split(" - ")
            since = significant_from.get((a, b))
            expected = (f"not significant with all {len(seeds)} seeds" if since is None
                        else f"significant only with all {len(seeds)} seeds" if since == len(seeds)
                        else f"significant with the first {since} seeds and with every larger count")
            assert f"{a} below {b}: {expected}" in text
        assert "dropout+max_norm below l2: significant with the first" in text


def test_the_holm_per_epoch_script_by_seed_count_refuses_an_epoch_the_run_lacks(tmp_path, capsys):
    import pandas as pd
    (tmp_path / "metrics").mkdir()
    pd.DataFrame([dict(epoch=1, variant=v, method=m, seed=s, test_error=0.02, active=1)
                  for v, (m, s) in enumerate((m, s) for m in ("l2", "dropout+l2") for s in (0, 1))]
                 ).to_csv(tmp_path / "metrics" / "epoch-00001.csv", index=False)
    module = _load_docs_script("holm_per_epoch")
    assert module.main([str(tmp_path), "--by-seeds", "--epoch", "3"]) == 2
    assert capsys.readouterr().err == "holm_per_epoch: the run has no epoch 3; its epochs are 1..1\n"


def test_the_holm_per_epoch_script_names_a_missing_run_in_one_line(tmp_path, capsys):
    module = _load_docs_script("holm_per_epoch")
    assert module.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"holm_per_epoch: no metrics_epoch.csv or metrics/epoch-*.csv under {tmp_path}: "
                   "pass a study's run directory\n")


def test_the_holm_per_epoch_script_reads_a_finished_runs_merged_metrics(tmp_path):
    """A finished run keeps its epoch rows in metrics_epoch.csv (the shards merged and removed): the
    script reads it, with the same table as from the shards of the same rows."""
    import pandas as pd
    rows = pd.DataFrame([dict(epoch=e, variant=v, method=m, seed=s, test_error=0.02 - 0.001 * s * (m != "l2"),
                              active=1)
                         for e in (1, 2) for v, (m, s) in enumerate((m, s) for m in ("l2", "dropout+l2")
                                                                    for s in range(4))])
    running, finished = tmp_path / "running", tmp_path / "finished"
    (running / "metrics").mkdir(parents=True)
    finished.mkdir()
    for e, g in rows.groupby("epoch"):
        g.to_csv(running / "metrics" / f"epoch-{e:05d}.csv", index=False)
    rows.to_csv(finished / "metrics_epoch.csv", index=False)
    module = _load_docs_script("holm_per_epoch")
    assert module.table(finished, every=1) == module.table(running, every=1)
    assert module.seeds_table(finished) == module.seeds_table(running)
    assert "| 2 | -0.15 (p " in module.table(finished, every=1)


def _small_runs(tmp_path, **seeds_by_name):
    """Real runs of one small study (L2, and dropout with max-norm, so the per-variant noise streams count),
    one per name with those seeds, under tmp_path/name: their run directories, in order."""
    from reglab.config import DataConfig, MethodConfig, StudyConfig
    from reglab.study import runner

    methods = (MethodConfig("l2", l2=1e-3), MethodConfig("dropout+max_norm", dropout_input=0.1, dropout_hidden=0.3,
                                                         max_norm=2.0))
    base = dict(name="seeds", data=DataConfig(name="moons", n_points=200), hidden=(16, 16), n_epochs=3,
                batch_size=20, methods=methods, log_every=2)
    return [runner.run_study(StudyConfig(seeds=seeds, **base), out_dir=tmp_path / name, quiet=True,
                             progress=False, time_methods=False, report=False)
            for name, seeds in seeds_by_name.items()]


def test_the_same_seeds_script_finds_two_runs_equal_on_shared_seeds_and_names_a_difference(tmp_path, capsys):
    """docs/examples/same_seeds.py (docs/studies.md: the 8-seed table9-cpu run repeats the 15-seed run's
    first eight seeds): two real runs of one study with seeds 0-1 and 0-2 (dropout, max-norm and L2,
    so the per-variant noise streams count) agree on seeds 0 and 1 in every value; a changed value is found."""
    import pandas as pd
    runs = _small_runs(tmp_path, two=(0, 1), three=(0, 1, 2))
    module = _load_docs_script("same_seeds")
    assert module.main([str(runs[0]), str(runs[1])]) == 0
    out = capsys.readouterr().out
    assert "seeds both runs trained: [0, 1]" in out
    assert "metrics_epoch.csv: 12 rows" in out and out.count("cells differing: 0") == 2

    epoch = pd.read_csv(runs[1] / "metrics_epoch.csv")
    row = epoch.index[(epoch.seed == 1) & (epoch.method == "dropout+max_norm") & (epoch.epoch == 2)][0]
    epoch.loc[row, "test_loss"] = float(epoch.loc[row, "test_loss"]) * (1 + 1e-15) + 1e-17
    epoch.to_csv(runs[1] / "metrics_epoch.csv", index=False)
    assert module.main([str(runs[0]), str(runs[1])]) == 1
    assert "cells differing: 1 {'test_loss': 1}" in capsys.readouterr().out


def test_a_seed_trains_the_same_numbers_whatever_seeds_run_beside_it(tmp_path, capsys):
    """What joining runs of different seeds rests on (docs/studies.md, the 150-epoch probe: seeds 0-2 in one
    run, 3-7 in another): a real run of seed 2 alone equals seed 2 of a run of seeds 0-2, in every value
    (dropout and max-norm, so the per-variant noise streams count)."""
    runs = _small_runs(tmp_path, three=(0, 1, 2), alone=(2,))
    assert _load_docs_script("same_seeds").main([str(runs[0]), str(runs[1])]) == 0
    out = capsys.readouterr().out
    assert "seeds both runs trained: [2]" in out and out.count("cells differing: 0") == 2


def _epoch_rows_of_two_methods(n_seeds: int):
    import pandas as pd
    return pd.DataFrame([dict(epoch=e, variant=v, method=m, seed=s,
                              test_error=0.02 - 0.001 * s * (m != "l2") - 0.0003 * e * (s % 2), active=1)
                         for e in (1, 2) for v, (m, s) in enumerate((m, s) for m in ("l2", "dropout+l2")
                                                                    for s in range(n_seeds))])


def _whole_and_split_runs(tmp_path, n_seeds: int, first_seeds: int):
    """Run folders (metrics_epoch.csv only) of _epoch_rows_of_two_methods(n_seeds): all seeds, the first
    `first_seeds`, the rest."""
    rows = _epoch_rows_of_two_methods(n_seeds)
    whole, first, rest = tmp_path / "whole", tmp_path / "first", tmp_path / "rest"
    for folder, part in ((whole, rows), (first, rows[rows.seed < first_seeds]), (rest, rows[rows.seed >= first_seeds])):
        folder.mkdir()
        part.to_csv(folder / "metrics_epoch.csv", index=False)
    return whole, first, rest


def test_the_holm_per_epoch_script_joins_runs_of_different_seeds_and_refuses_a_seed_twice(tmp_path, capsys):
    """Several runs of one study that trained different seeds, joined, give the tables of one run with all
    those seeds; a seed of a method in two of them is a one-line error."""
    whole, first, rest = _whole_and_split_runs(tmp_path, n_seeds=6, first_seeds=3)
    module = _load_docs_script("holm_per_epoch")
    assert module.table([first, rest], every=1) == module.table(whole, every=1)
    assert module.seeds_table([rest, first]) == module.seeds_table(whole)
    assert module.main([str(first), str(whole)]) == 2
    assert capsys.readouterr().err == ("holm_per_epoch: l2 seed 0 is in more than one of the runs: join runs that "
                                       "trained different seeds\n")


def test_the_gap_script_joins_runs_of_different_seeds_and_refuses_a_seed_twice(tmp_path, capsys, monkeypatch):
    """docs/examples/cpu-table9-probe/gap.py: the per-epoch gaps of runs joined equal those of one run with
    all their seeds; a seed of a method in two runs stops it with one line."""
    whole, first, rest = _whole_and_split_runs(tmp_path, n_seeds=5, first_seeds=2)
    module = _load_docs_script("cpu-table9-probe/gap")

    def printed(*dirs):
        monkeypatch.setattr("sys.argv", ["gap.py", *map(str, dirs)])
        module.main()
        return capsys.readouterr().out

    assert printed(rest, first) == printed(whole)
    assert "epoch   2: l2 1.98 | dropout+l2 1.78 (-0.20 +- " in printed(whole)
    with pytest.raises(SystemExit, match="gap.py: l2 seed 0 is in more than one of the runs"):
        printed(first, whole)


def test_the_holm_per_epoch_script_compares_only_the_methods_asked_for(tmp_path, capsys):
    """--methods: the family is the pairs of those methods, as in a run that had only them; a method the
    run lacks is a one-line error naming the run's methods."""
    import pandas as pd
    rows = _epoch_rows_of_two_methods(4)
    third = rows[rows.method == "l2"].assign(method="l2+kl", test_error=lambda r: r.test_error + 0.0005 * r.seed)
    three, two = tmp_path / "three", tmp_path / "two"
    for folder, part in ((three, pd.concat([rows, third])), (two, rows)):
        folder.mkdir()
        part.to_csv(folder / "metrics_epoch.csv", index=False)
    module = _load_docs_script("holm_per_epoch")
    assert "over the 3 pairs" in module.table(three, every=1)
    assert module.table(three, every=1, methods=["l2", "dropout+l2"]) == module.table(two, every=1)
    assert module.main([str(three), "--methods", "l2,max_norm"]) == 2
    assert capsys.readouterr().err == "holm_per_epoch: no method 'max_norm' in the run; its methods are l2, dropout+l2, l2+kl\n"
