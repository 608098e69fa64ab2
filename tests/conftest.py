"""Suite-wide collection rules, and TF's oneDNN CPU kernels on for every machine.

TF enables oneDNN by default only on CPUs with AVX-512 VNNI/BF16 or AMX; its other CPU kernels lack
what some layers use (dilated-conv gradients, depthwise convs with unequal strides), so on an AVX2-only
CPU dozens of layer and op tests fail (README, "CPUs where TensorFlow leaves oneDNN off"). Set before any test imports TF;
no effect where oneDNN is on already, and an explicit TF_ENABLE_ONEDNN_OPTS=0 still wins.

XLA's CPU backend compiles at LLVM -O0 here: the jit_compile checks test what XLA computes, not how fast
its machine code runs, and compiling is most of their time (tests/layers/test_sic.py + test_bottleneck.py
46 -> 35 s on an AVX2 EPYC). An explicit XLA_FLAGS wins.
"""

import os

import pytest

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

# Tests that need the C++ op library build it first (~40 s from a fresh install): slow run only.
_BUILD_FIXTURES = {"lib", "custom_ops"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if _BUILD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
