import pytest
import torch


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """`reglab run` sets torch's thread count for its process; in-process CLI tests put it back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
