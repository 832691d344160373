"""The memory estimate: the parameter count against a closed form, refusals with the estimate and the fix."""

import pytest

from reglab import memory
from reglab.config import DataConfig, MethodConfig, StudyConfig
from reglab.errors import ReglabError


def _study(**kw) -> StudyConfig:
    base = dict(name="s", data=DataConfig(name="mnist"), hidden=(256, 256), seeds=(0, 1, 2),
                methods=(MethodConfig(name="a"), MethodConfig(name="b", early_stopping=True)))
    base.update(kw)
    return StudyConfig(**base)


def test_the_parameter_count_is_784_256_256_10_by_hand_and_weights_are_4_bytes_each_variant():
    est = memory.estimate_study_memory(_study())
    assert est.params_per_variant == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10 == 269_322
    assert est.n_variants == 6
    assert est.parts["weights"] == 4 * 269_322 * 6
    assert est.parts["optimizer state"] == est.parts["weights"]                 # SGD: one momentum buffer
    assert est.parts["early-stopping best weights"] == 4 * 269_322 * 3          # method b's 3 seeds
    adam = memory.estimate_study_memory(_study(optimizer="adam"))
    assert adam.parts["optimizer state"] == 2 * adam.parts["weights"]


def test_dropconnect_adds_its_masks_factors_masked_weights_and_gradient_for_its_variants_only():
    assert memory.estimate_study_memory(_study()).parts["DropConnect masks"] == 0
    est = memory.estimate_study_memory(_study(methods=(MethodConfig(name="a"), MethodConfig(name="dc", dropconnect=0.5))))
    weights = 784 * 256 + 256 * 256 + 256 * 10                                  # biases are never masked
    assert est.parts["DropConnect masks"] == (2 + 3 * 4) * weights * 3           # method dc's 3 seeds


def test_activations_scale_with_the_batch_and_evaluation_with_the_eval_batch():
    small, big = (memory.estimate_study_memory(_study(batch_size=b)) for b in (100, 200))
    assert big.parts["activations"] == 2 * small.parts["activations"]
    e1, e2 = (memory.estimate_study_memory(_study(eval_batch_size=b)) for b in (1000, 4000))
    assert e2.parts["evaluation"] == 4 * e1.parts["evaluation"]


def test_a_study_that_does_not_fit_is_refused_with_estimate_available_and_fix():
    huge = _study(hidden=(1_000_000, 1_000_000))
    with pytest.raises(ReglabError) as e:
        memory.check_memory(huge, available={"MemAvailable": 8 * 2**30, "cgroup": 4 * 2**30})
    msg = str(e.value)
    assert "\n" not in msg
    assert "TiB" in msg and "4.0 GiB is available" in msg and "cgroup 4.0 GiB" in msg and "MemAvailable 8.0 GiB" in msg
    assert "Fix: fewer seeds" in msg and "--device cuda" in msg


def test_a_study_that_fits_passes_and_no_reading_means_no_refusal():
    assert memory.check_memory(_study(), available={"MemAvailable": 8 * 2**30}).total < 2**30
    memory.check_memory(_study(hidden=(1_000_000,) * 2), available={})


def test_the_cgroup_limit_is_read_from_memory_max_minus_memory_current(tmp_path):
    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "memory.current").write_text("73741824\n")
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemAvailable:  2048 kB\n")
    got = memory.available_memory("cpu", root=tmp_path, meminfo=tmp_path / "meminfo")
    assert got == {"cgroup": 1_000_000_000, "MemAvailable": 2048 * 1024}
    (tmp_path / "memory.max").write_text("max\n")
    assert "cgroup" not in memory.available_memory("cpu", root=tmp_path, meminfo=tmp_path / "meminfo")
