"""Fixtures of the layer tests; the checks themselves are in `tests.harness`."""

import pytest

from tests import harness


@pytest.fixture
def run_paths():
    return harness.run_paths


@pytest.fixture
def mixed_float16():
    with harness.mixed_float16_policy():
        yield
