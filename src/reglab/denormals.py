"""Denormal floats flushed to zero in every torch thread of a ``reglab`` process (x86: FTZ and DAZ).

Why. The momentum buffer entry of a first-layer weight whose input pixel is almost always 0
(MNIST's border) gets no gradient and decays as ``mu^t``; on its way to 0 it spends about 150 steps
in float32's denormal range (0 < |x| < 2^-126, about 1.2e-38), and every operation that reads or
writes such a value costs the CPU a microcode assist. By its last epochs the default study carries
about 2 % of its first-layer momentum entries there, and its step slows from about 31 to 38 ms on the
2-core Xeon; with denormals flushed the step stays flat (docs/performance.md, "Denormals").

What changes. A result below the smallest normal number is written as 0 (FTZ, flush to zero) and such
an input reads as 0 (DAZ, denormals are zero). The flushed values are below half an ulp of every weight
they are added to, so the weights, and every metric, come out bit for bit the same in the studies
measured (the default study: all 20 epochs); a study whose values themselves live near 1e-38 (a weight
that decays into that range) would differ there.

How. ``torch.set_flush_denormal`` sets the calling thread's floating-point control register, and a
thread inherits the register of the thread that creates it. So the ``reglab`` command sets it first
thing (``cli.entry``), before torch starts its OpenMP threads, and then checks that every thread
flushes: one parallel multiply whose every result is a denormal, split across all threads. When the
threads were started earlier (a notebook or test process that used torch before), some would not
flush, and mixed threads would make a result depend on which thread computed it; then the setting
is undone and the process keeps IEEE denormals in every thread. ``environment.json`` records which.
"""

from __future__ import annotations

import torch

PROBE_PER_THREAD = 1 << 16   # elements per thread of the probe (ATen splits elementwise work above 32,768)


def flush_denormals() -> bool:
    """Flush denormals in every torch thread of this process, if all of them can; True if they now do.

    False (and this process unchanged) on a CPU without the control (``torch.set_flush_denormal``
    says so) or when torch's threads started before this call and do not follow the setting.
    """
    if not torch.set_flush_denormal(True):
        return False
    if every_thread_flushes():
        return True
    torch.set_flush_denormal(False)
    return False


def every_thread_flushes() -> bool:
    """Does every torch thread flush denormals now? One multiply of ``tiny`` by 1/2 (a denormal result)
    over ``PROBE_PER_THREAD`` elements per thread: all of it is 0 only if every thread flushed its part."""
    tiny = torch.finfo(torch.float32).tiny
    probe = torch.full((max(1, torch.get_num_threads()) * PROBE_PER_THREAD,), tiny, dtype=torch.float32)
    return bool((probe.mul_(0.5) == 0).all())
