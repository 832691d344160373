import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run these tests on one torch thread, then restore the setting.

    The work here is small tensors; on a shared 2-core machine a 2-thread
    process was measured 4-10x slower whenever another process took a core.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
