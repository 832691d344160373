import pytest

from reglab.data import load_dataset

from .helpers import tiny_study


@pytest.fixture
def study():
    return tiny_study()


@pytest.fixture
def dataset(study):
    return load_dataset(study.data)
