"""The runner's file plumbing, with a stand-in trainer that follows the engine contract.

The stand-in is deterministic and cheap, so these tests check what the runner
writes and how it resumes, independent of the real engine (whose end-to-end
runs are in test_cli.py).
"""

import math
import subprocess
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest

from reglab.config import DataConfig, MethodConfig, StudyConfig, load_toml
from reglab.errors import ReglabError
from reglab.results import load_run, read_json
from reglab.study import runner


@dataclass
class Record:
    epoch: int
    steps: np.ndarray
    loss_data: np.ndarray
    loss_penalty: np.ndarray
    metrics: dict


class StandInTrainer:
    """Engine-contract double: per-variant random walks seeded by the variant's seed.

    A method with lr >= 100 produces NaN from epoch 2 on (a diverged variant).
    `interrupt_after` raises KeyboardInterrupt after that many epochs (a simulated kill).
    """

    interrupt_after = None
    steps_per_epoch = 3

    def __init__(self, cfg, dataset):
        self.cfg = cfg
        self.V = cfg.n_variants
        self.epoch = 0
        self.rngs = [np.random.default_rng(1000 + s) for _, _, s in cfg.variants()]
        self.value = np.full(self.V, 0.5)
        self.exploding = np.array([m.lr >= 100 for _, m, _ in cfg.variants()])
        self.best_val = np.full(self.V, np.inf)
        self.best_epoch = np.zeros(self.V, dtype=int)

    @property
    def done(self):
        return self.epoch >= self.cfg.n_epochs

    def train_epoch(self):
        if StandInTrainer.interrupt_after is not None and self.epoch >= StandInTrainer.interrupt_after:
            raise KeyboardInterrupt
        self.epoch += 1
        noise = np.array([r.normal(0, 0.02) for r in self.rngs])
        self.value = np.clip(self.value * 0.8 + noise, 0.0, 1.0)
        val = self.value.copy()
        if self.epoch >= 2:
            val[self.exploding] = np.nan
        better = np.nan_to_num(val, nan=np.inf) < self.best_val
        self.best_val[better] = val[better]
        self.best_epoch[better] = self.epoch
        s0 = (self.epoch - 1) * self.steps_per_epoch
        steps = np.arange(s0 + 1, s0 + 1 + self.steps_per_epoch)
        loss = np.tile(val, (len(steps), 1)) + 0.01 * steps[:, None]
        metrics = {"train_loss": val * 2, "train_error": val, "val_loss": val * 2, "val_error": val,
                   "test_loss": val * 2, "test_error": val + 0.01, "lr": np.full(self.V, 0.1),
                   "epoch_time_s": np.full(self.V, 0.001), "eval_time_s": np.full(self.V, 0.001), "active": ~np.isnan(val),
                   "diverged": np.isnan(val)}
        return Record(self.epoch, steps, loss, np.full_like(loss, 0.001), metrics)

    def state_dict(self):
        return {"epoch": self.epoch, "value": self.value.copy(), "rngs": [r.bit_generator.state for r in self.rngs],
                "best_val": self.best_val.copy(), "best_epoch": self.best_epoch.copy()}

    def load_state_dict(self, sd):
        self.epoch = sd["epoch"]
        self.value = sd["value"].copy()
        for r, st in zip(self.rngs, sd["rngs"]):
            r.bit_generator.state = st
        self.best_val = sd["best_val"].copy()
        self.best_epoch = sd["best_epoch"].copy()

    def final_summary(self):
        diverged = self.exploding & (self.epoch >= 2)
        return [{"test_error_last": float(self.value[v] + 0.01) if not diverged[v] else math.nan,
                 "test_error_best_val": float(self.best_val[v] + 0.01), "best_val_error": float(self.best_val[v]),
                 "best_epoch": int(self.best_epoch[v]), "stop_epoch": self.epoch, "diverged": bool(diverged[v])}
                for v in range(self.V)]

    def analysis(self):
        return {"weight_hist": np.ones((self.V, 4)), "weight_hist_edges": np.linspace(0, 1, 5)}


@pytest.fixture
def stand_in(monkeypatch):
    import reglab.engine.registry  # noqa: F401  (the runner imports it by name: loaded before the stand-in)
    fake = types.ModuleType("reglab.engine")
    fake.Trainer = StandInTrainer
    monkeypatch.setitem(sys.modules, "reglab.engine", fake)
    monkeypatch.setattr(StandInTrainer, "interrupt_after", None)
    monkeypatch.setattr(runner, "TIMING_MIN_SECONDS", 0.0)
    # the report reads real engine arrays; the stand-in's are placeholders
    monkeypatch.setattr(runner, "_build_report", lambda run_dir, say: None)
    return StandInTrainer


def _cfg(**kw):
    methods = kw.pop("methods", (MethodConfig("l2", l2=1e-3), MethodConfig("l1", l1=1e-4)))
    base = dict(name="plumbing", data=DataConfig(name="moons", n_points=80), hidden=(8,), n_epochs=5,
                batch_size=10, seeds=(0, 1, 2), methods=methods, checkpoint_every=1)
    base.update(kw)
    return StudyConfig(**base)


def test_a_run_directory_describes_itself(tmp_path, stand_in):
    cfg = _cfg()
    out = runner.run_study(cfg, out_dir=tmp_path / "run", quiet=True)
    for name in ("manifest.json", "config.json", "config.toml", "environment.json", "dataset.json",
                 "variants.json", "metrics_epoch.csv", "metrics_iter.csv", "summary.json", "timing.json",
                 "analysis.npz"):
        assert (out / name).is_file(), name
    assert not (out / ".lock").exists()
    assert not (out / "metrics").exists()
    assert load_toml(out / "config.toml") == cfg
    assert StudyConfig.from_dict(read_json(out / "config.json")) == cfg
    manifest = read_json(out / "manifest.json")
    assert manifest["status"] == "complete" and manifest["epochs_done"] == 5 and manifest["study"] == "plumbing"
    variants = read_json(out / "variants.json")
    assert [(v["variant"], v["method"], v["seed"]) for v in variants] == [
        (0, "l2", 0), (1, "l2", 1), (2, "l2", 2), (3, "l1", 0), (4, "l1", 1), (5, "l1", 2)]
    assert variants[0]["hyperparameters"]["l2"] == 1e-3
    env = read_json(out / "environment.json")
    assert env["torch_threads"] >= 1 and env["torch"] and env["cpu_model"]
    ds = read_json(out / "dataset.json")
    assert ds["n_train"] == 40 and ds["n_val"] == 20 and ds["info"]["params"]["n_points"] == 80
    run = load_run(out)
    assert len(run.epoch_rows["epoch"]) == 5 * 6
    assert len(run.iter_rows["step"]) == 5 * 3 * 6
    assert list(np.unique(run.epoch_rows["epoch"])) == [1, 2, 3, 4, 5]
    # the newest two checkpoints, each with its digest
    assert sorted(p.name for p in (out / "checkpoints").glob("epoch-*")) == [
        "epoch-00004.pt", "epoch-00004.pt.sha256", "epoch-00005.pt", "epoch-00005.pt.sha256"]


def test_summary_statistics_are_the_mean_and_t_interval_over_seeds(tmp_path, stand_in):
    out = runner.run_study(_cfg(), out_dir=tmp_path / "run", quiet=True)
    summary = read_json(out / "summary.json")
    l2 = [r["test_error"] for r in summary["variants"] if r["method"] == "l2"]
    st = summary["methods"]["l2"]["stats"]["test_error"]
    assert st["n"] == 3
    assert st["mean"] == pytest.approx(np.mean(l2))
    assert st["std"] == pytest.approx(np.std(l2, ddof=1))
    # t_{0.975, 2} = 4.3027
    assert st["ci95_half_width"] == pytest.approx(4.302652729749464 * np.std(l2, ddof=1) / np.sqrt(3))
    pairs = [c for c in summary["comparisons"] if c["metric"] == "test_error"]
    assert [(c["a"], c["b"]) for c in pairs] == [("l2", "l1")]
    l1 = [r["test_error"] for r in summary["variants"] if r["method"] == "l1"]
    assert pairs[0]["mean_difference"] == pytest.approx(np.mean(np.subtract(l2, l1)))
    # the last-epoch metrics are in the summary too
    assert summary["variants"][0]["last_val_error"] == pytest.approx(summary["variants"][0]["val_error"])


def test_summary_json_keeps_the_raw_p_and_adds_holms_p_over_each_metrics_family(tmp_path, stand_in):
    from reglab.stats import holm
    methods = (MethodConfig("l2", l2=1e-3), MethodConfig("l1", l1=1e-4), MethodConfig("none"))
    out = runner.run_study(_cfg(methods=methods), out_dir=tmp_path / "run", quiet=True)
    summary = read_json(out / "summary.json")
    for metric in ("test_error", "val_error"):
        family = [c for c in summary["comparisons"] if c["metric"] == metric]
        assert len(family) == 3
        expected = holm([c["p_value"] for c in family])
        for c, q in zip(family, expected):
            assert c["p_holm"] == pytest.approx(q) and c["p_holm"] >= c["p_value"]
            assert c["significant_holm"] == (c["p_holm"] < 0.05)


def test_a_diverged_variant_is_listed_and_left_out_of_the_statistics(tmp_path, stand_in):
    cfg = _cfg(methods=(MethodConfig("l2", l2=1e-3), MethodConfig("hot", lr=1000.0)), seeds=(0, 1))
    out = runner.run_study(cfg, out_dir=tmp_path / "run", quiet=True)
    summary = read_json(out / "summary.json")
    assert [(d["method"], d["seed"]) for d in summary["diverged"]] == [("hot", 0), ("hot", 1)]
    assert summary["methods"]["hot"]["n_diverged"] == 2
    assert summary["methods"]["hot"]["stats"]["test_error"]["n"] == 0
    assert summary["methods"]["hot"]["stats"]["test_error"]["n_excluded"] == 2
    assert summary["methods"]["l2"]["stats"]["test_error"]["n"] == 2
    assert read_json(out / "manifest.json")["status"] == "complete"


def test_an_interrupted_run_resumes_to_the_same_metrics(tmp_path, stand_in):
    cfg = _cfg(n_epochs=6, checkpoint_every=2)
    whole = runner.run_study(cfg, out_dir=tmp_path / "whole", quiet=True)

    stand_in.interrupt_after = 3  # dies in epoch 4; the last checkpoint is epoch 2, shard 3 is on disk
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(cfg, out_dir=tmp_path / "cut", quiet=True)
    assert read_json(tmp_path / "cut" / "manifest.json")["status"] == "interrupted"
    assert (tmp_path / "cut" / "metrics" / "epoch-00003.csv").exists()
    stand_in.interrupt_after = None
    runner.run_study(None, out_dir=tmp_path / "cut", resume=True, quiet=True)

    for name in ("metrics_epoch.csv", "metrics_iter.csv"):
        assert (tmp_path / "cut" / name).read_text() == (whole / name).read_text()
    a, b = read_json(whole / "summary.json"), read_json(tmp_path / "cut" / "summary.json")
    assert a["variants"] == b["variants"] and a["methods"] == b["methods"]
    timing = read_json(tmp_path / "cut" / "timing.json")
    assert [s["resumed"] for s in timing["sessions"]] == [False, True]
    assert timing["sessions"][1]["first_epoch"] == 3


def test_resuming_a_run_that_died_before_its_first_checkpoint_starts_over(tmp_path, stand_in):
    cfg = _cfg(n_epochs=3, checkpoint_every=5)
    stand_in.interrupt_after = 2
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(cfg, out_dir=tmp_path / "cut", quiet=True)
    stand_in.interrupt_after = None
    runner.run_study(None, out_dir=tmp_path / "cut", resume=True, quiet=True)
    whole = runner.run_study(cfg, out_dir=tmp_path / "whole", quiet=True)
    assert (tmp_path / "cut" / "metrics_epoch.csv").read_text() == (whole / "metrics_epoch.csv").read_text()


def test_resume_refuses_a_different_config(tmp_path, stand_in):
    cfg = _cfg(n_epochs=2)
    runner.run_study(cfg, out_dir=tmp_path / "run", quiet=True)
    with pytest.raises(ReglabError, match="differs from the one stored"):
        runner.run_study(cfg.replace(n_epochs=3), out_dir=tmp_path / "run", resume=True, quiet=True)


def test_resuming_a_complete_run_changes_nothing(tmp_path, stand_in, capsys):
    out = runner.run_study(_cfg(n_epochs=2), out_dir=tmp_path / "run", quiet=True)
    before = (out / "summary.json").read_text()
    runner.run_study(None, out_dir=out, resume=True)
    assert "already complete" in capsys.readouterr().out
    assert (out / "summary.json").read_text() == before


def test_a_second_run_on_a_directory_in_use_is_refused(tmp_path, stand_in):
    d = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import time; from reglab.results import RunLock\n"
                               f"l = RunLock({str(d)!r}); l.acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ReglabError, match="in use by another reglab process"):
            runner.run_study(_cfg(), out_dir=d, quiet=True)
    finally:
        holder.kill()
        holder.wait()
    assert not (d / "manifest.json").exists()


def test_a_fresh_run_refuses_a_directory_that_holds_a_run(tmp_path, stand_in):
    out = runner.run_study(_cfg(n_epochs=1), out_dir=tmp_path / "run", quiet=True)
    with pytest.raises(ReglabError, match="already holds a run"):
        runner.run_study(_cfg(n_epochs=1), out_dir=out, quiet=True)


def test_resume_of_a_folder_that_is_not_a_run_is_one_clear_error(tmp_path, stand_in):
    with pytest.raises(ReglabError, match="does not exist"):
        runner.run_study(None, out_dir=tmp_path / "nowhere", resume=True, quiet=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReglabError, match="no config.json"):
        runner.run_study(None, out_dir=tmp_path / "empty", resume=True, quiet=True)


def test_each_method_is_timed_alone(tmp_path, stand_in):
    out = runner.run_study(_cfg(n_epochs=2), out_dir=tmp_path / "run", quiet=True)
    timing = read_json(out / "timing.json")
    assert set(timing["methods_alone"]) == {"l2", "l1"}
    for m in timing["methods_alone"].values():
        assert m["variants"] == 3 and m["timed_steps"] >= 1
        assert m["repeats"] == runner.TIMING_REPEATS >= 3
        assert len(m["repeats_estimated_alone_s"]) == m["repeats"]
        assert m["seconds_per_step_alone"] == pytest.approx(float(np.median(m["repeats_seconds_per_step"])))
        assert m["estimated_alone_s"] == pytest.approx(m["seconds_per_step_alone"] * m["steps_in_study"])
        lo, hi = m["estimated_alone_s_range"]
        assert lo == min(m["repeats_estimated_alone_s"]) <= m["estimated_alone_s"] <= hi
    assert timing["study_wall_s"] >= timing["study_train_s"] > 0
    assert timing["study_train_s"] == pytest.approx(0.001 * 2)  # the engine's train-only times, summed


def test_the_resolved_config_and_a_summary_table_are_printed(tmp_path, stand_in, capsys):
    runner.run_study(_cfg(n_epochs=1), out_dir=tmp_path / "run", progress=False)
    out = capsys.readouterr().out
    assert "# resolved config" in out and "name=plumbing" in out
    assert "method l2: l2=0.001" in out and "method l1: l1=0.0001" in out
    assert "test error %" in out and f"results in {tmp_path / 'run'}" in out


def test_a_study_with_a_follow_up_prints_the_next_command_last(tmp_path, stand_in, capsys, monkeypatch):
    from reglab.study import presets
    monkeypatch.setitem(presets.FOLLOW_UP, ("plumbing", "moons"), (presets.FollowUp("reglab run elsewhere"),))
    runner.run_study(_cfg(n_epochs=1), out_dir=tmp_path / "run", progress=False)
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == "reglab: next: reglab run elsewhere"
    assert read_json(tmp_path / "run" / "summary.json")["next_step"] == "reglab run elsewhere"   # the report reads it
    runner.run_study(_cfg(n_epochs=1, name="other"), out_dir=tmp_path / "other", progress=False)
    assert "next:" not in capsys.readouterr().out
    assert "next_step" not in read_json(tmp_path / "other" / "summary.json")
    # the default study on MNIST has one: the preset where Table 9's ranking can be seen
    assert "--preset table9-cpu" in presets.follow_up("mnist-quick", "mnist", 3)
    assert presets.follow_up("mnist-quick", "fashion-mnist", 3) is None


def test_table9_cpu_with_fewer_seeds_than_measured_points_to_the_next_run_with_more():
    from reglab.study import presets
    tier, n = presets.TABLE9_CPU_SEEDS_DROPOUT_TIER, presets.TABLE9_CPU_SEEDS_MEASURED
    assert len(presets.mnist_table9_cpu().seeds) < tier < n
    for seeds in (len(presets.mnist_table9_cpu().seeds), tier - 1):          # first the dropout tier's count
        text = presets.follow_up("mnist-table9-cpu", "mnist", seeds)
        assert f"--preset table9-cpu --seeds {tier};" in text and f"with {n} (" in text
    for seeds in (tier, n - 1):                                               # then the count that separates max-norm
        text = presets.follow_up("mnist-table9-cpu", "mnist", seeds)
        assert f"--preset table9-cpu --seeds {n};" in text and f"--seeds {tier}" not in text
    assert presets.follow_up("mnist-table9-cpu", "mnist", n) is None          # a run with that many is the answer
    assert presets.follow_up("mnist-table9-cpu", "fashion-mnist", 3) is None
    # the default study points at the count the dropout tier needs, not at the longest run
    assert f"with {tier} seeds" in presets.follow_up("mnist-quick", "mnist", 3)


def test_default_run_dir_is_study_name_and_time_and_never_reused(tmp_path):
    a = runner.default_run_dir("mnist-quick", root=tmp_path)
    assert a.parent == tmp_path and a.name.startswith("mnist-quick-")
    a.mkdir()
    b = runner.default_run_dir("mnist-quick", root=tmp_path)
    assert b != a


def test_a_run_that_fails_before_writing_anything_leaves_no_folder(tmp_path, stand_in):
    cfg = _cfg(data=DataConfig(name="mnist", subset_per_class=5))
    with pytest.raises(ReglabError):
        runner.run_study(cfg, out_dir=tmp_path / "run", data_dir=tmp_path / "no-data-here", quiet=True)
    assert not (tmp_path / "run").exists()


def test_resume_refuses_files_it_keeps_that_changed_after_they_were_written(tmp_path, stand_in):
    cfg = _cfg(n_epochs=6, checkpoint_every=2)
    stand_in.interrupt_after = 3  # checkpoint at epoch 2; shard 3 is dropped by the resume anyway
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(cfg, out_dir=tmp_path / "cut", quiet=True)
    stand_in.interrupt_after = None
    shard = tmp_path / "cut" / "metrics" / "epoch-00002.csv"
    damaged = shard.read_text().replace("0.", "1.", 1)
    shard.write_text(damaged)
    with pytest.raises(ReglabError, match=r"epoch-00002.csv changed or went missing after reglab wrote it"):
        runner.run_study(None, out_dir=tmp_path / "cut", resume=True, quiet=True)
    assert shard.read_text() == damaged  # reported, not overwritten, and not recorded as if reglab wrote it
    assert read_json(tmp_path / "cut" / "manifest.json")["sha256"]["metrics/epoch-00002.csv"] != \
        __import__("reglab.results", fromlist=["file_sha256"]).file_sha256(shard)


def test_resume_of_a_complete_run_refuses_changed_results_and_rebuilds_nothing_from_them(tmp_path, stand_in):
    out = runner.run_study(_cfg(n_epochs=2), out_dir=tmp_path / "run", quiet=True)
    (out / "summary.json").write_text((out / "summary.json").read_text() + " ")
    with pytest.raises(ReglabError, match=r"summary.json changed or went missing"):
        runner.run_study(None, out_dir=out, resume=True, quiet=True)


def test_resume_refuses_a_changed_or_missing_manifest_of_a_run_with_results(tmp_path, stand_in):
    out = runner.run_study(_cfg(n_epochs=2), out_dir=tmp_path / "run", quiet=True)
    manifest = out / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"epochs_done": 2', '"epochs_done": 1'))
    with pytest.raises(ReglabError, match=r"manifest.json changed after reglab wrote it"):
        runner.run_study(None, out_dir=out, resume=True, quiet=True)
    manifest.unlink()  # a complete run without its manifest: not a fresh start with the shards gone
    with pytest.raises(ReglabError, match=r"manifest.json is missing but the run has results"):
        runner.run_study(None, out_dir=out, resume=True, quiet=True)
    assert not manifest.exists()


def test_a_run_killed_while_removing_its_consolidated_shards_resumes(tmp_path, stand_in, monkeypatch):
    from reglab.results import RunWriter
    real = RunWriter.remove_shards

    def killed_after_removing(self):
        real(self)
        raise KeyboardInterrupt  # a kill after the shards are gone, before the manifest says so
    monkeypatch.setattr(RunWriter, "remove_shards", killed_after_removing)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(_cfg(n_epochs=2), out_dir=tmp_path / "run", quiet=True)
    monkeypatch.setattr(RunWriter, "remove_shards", real)
    assert "metrics/epoch-00001.csv" in read_json(tmp_path / "run" / "manifest.json")["sha256"]
    runner.run_study(None, out_dir=tmp_path / "run", resume=True, quiet=True)
    assert "metrics/epoch-00001.csv" not in read_json(tmp_path / "run" / "manifest.json")["sha256"]


def test_the_console_summary_table_keeps_its_columns_for_long_method_names():
    stat = {"mean": 0.0123, "ci95_half_width": 0.001}
    methods = {name: {"stats": {"test_error": stat, "val_error": stat}, "n_diverged": 0}
               for name in ("l2", "gaussian_dropout+max_norm@0.1/0.25")}
    lines = runner.format_summary_table({"n_seeds": 3, "methods": methods}).splitlines()
    header, rows = lines[0], lines[1:3]
    # every row ends its columns where the header does: the diverged count under "diverged"
    assert all(len(r) == len(header) for r in rows)
    assert all(r.split()[0] in methods for r in rows)
    assert rows[1].startswith("gaussian_dropout+max_norm@0.1/0.25 ")
