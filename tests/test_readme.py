"""The README stays true: its Python example runs, its commands exist."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_every_reglab_command_in_the_readme_is_a_real_subcommand():
    from reglab.cli import COMMANDS

    used = set()
    for block in _blocks("bash"):
        for line in block.splitlines():
            m = re.match(r"\s*reglab (\w+)", line)
            if m:
                used.add(m.group(1))
    assert used and used <= set(COMMANDS), used - set(COMMANDS)


def test_quick_start_scripts_exist_and_ci_calls_the_test_command():
    root = README.parent
    text = README.read_text()
    for script in ("scripts/run.sh", "scripts/test.sh"):
        assert f"bash {script}" in text and (root / script).is_file()
    assert "scripts/test.sh" in (root / ".ci" / "run").read_text()


@pytest.mark.slow
def test_the_python_api_example_trains_six_methods_for_one_epoch(data_dir):
    (code,) = _blocks("python")
    env = dict(os.environ, REGLAB_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", "import torch; torch.set_num_threads(1)\n" + code],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    errors = [float(x) for x in re.findall(r"test error ([0-9.]+)%", out.stdout)]
    assert len(errors) == 12
    assert all(0 < e < 15 for e in errors), errors  # one epoch of SGD: far from chance (90%)
