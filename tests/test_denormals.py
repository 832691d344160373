"""reglab.denormals: every torch thread flushes denormals, or none does (each case in a fresh process,
since the setting is per thread and inherited when a thread starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

TINY = torch.finfo(torch.float32).tiny


def _python(code: str) -> list[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _cpu_can_flush() -> bool:
    """Does this CPU have the control at all (x86 SSE: yes)? Asked in a fresh process."""
    return _python("import torch; print(torch.set_flush_denormal(True))") == ["True"]


def test_set_before_the_threads_start_every_thread_flushes_a_denormal_result():
    # two threads, the probe's work split between them; then an independent check: a large multiply
    # whose exact results are all denormal (tiny / 4) comes out all zero, a small one on the caller too
    out = _python(f"""
import torch
torch.set_num_threads(2)
from reglab.denormals import flush_denormals, every_thread_flushes
on = flush_denormals()
big = torch.full((1 << 20,), {TINY!r}).mul_(0.25)
small = torch.tensor([{TINY!r}]).mul_(0.25)
print(on, every_thread_flushes(), int((big != 0).sum()), int((small != 0).sum()))
""")
    if _cpu_can_flush():
        assert out == ["True", "True", "0", "0"]
    else:   # no control on this CPU: nothing changed, denormals computed as IEEE says
        assert out[0] == "False" and out[2] != "0"


def test_threads_started_before_it_keep_ieee_denormals_in_every_thread():
    # torch's threads are already running (a notebook that used torch first): a worker would not
    # follow the caller's setting, so the setting is undone and the caller computes denormals too
    out = _python(f"""
import torch
torch.set_num_threads(2)
torch.ones(1 << 20).mul_(2.0)                      # starts the worker thread
from reglab.denormals import flush_denormals, every_thread_flushes
on = flush_denormals()
small = torch.tensor([{TINY!r}]).mul_(0.25)        # on the calling thread only
print(on, every_thread_flushes(), int((small != 0).sum()))
""")
    assert out == ["False", "False", "1"]


def test_the_reglab_command_flushes_and_its_run_records_it(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "-m", "reglab", "run", "pointcloud", "--smoke", "--seeds", "1",
                           "--out", str(out), "--quiet", "--no-report"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    recorded = json.loads((out / "environment.json").read_text())["flush_denormals"]
    assert recorded is _cpu_can_flush()
