"""Suite-wide collection rules."""

import pytest

# Tests that need the C++ op library build it first (~40 s from a fresh install): slow run only.
_BUILD_FIXTURES = {"lib", "custom_ops"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if _BUILD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
