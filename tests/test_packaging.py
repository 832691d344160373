"""torch is a range for users and an exact pin for the README's set-up and CI."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _torch_requirement() -> Requirement:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch,) = [Requirement(d) for d in deps if Requirement(d).name == "torch"]
    return torch


def test_pyproject_admits_a_users_cuda_torch_instead_of_pinning_one_build():
    spec = _torch_requirement().specifier
    # the GPU machines of this project carry torch 2.11 (CUDA 13); the CPU set-up uses 2.13.0
    for version in ("2.4.0", "2.11.0", "2.13.0", "2.14.1"):
        assert spec.contains(version), (version, str(spec))
    assert not spec.contains("3.0.0") and not spec.contains("2.3.1")
    assert not any(s.operator == "==" for s in spec)


def test_the_setup_script_installs_the_exact_pin_of_the_constraints_file():
    pins = [Requirement(line) for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    (torch,) = [r for r in pins if r.name == "torch"]
    assert str(torch.specifier) == "==2.13.0"
    assert _torch_requirement().specifier.contains("2.13.0")
    setup = (ROOT / "scripts" / "setup-env.sh").read_text()
    assert '-c "$root/constraints.txt"' in setup
    assert "constraints.txt" in setup.split("stamp=", 1)[1].splitlines()[0]   # a changed pin re-installs
