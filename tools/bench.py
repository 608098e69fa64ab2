#!/usr/bin/env python
"""Standalone `effconv bench` (same code: keras_effconv.cli.bench). Example:

    python tools/bench.py --quick
    python tools/bench.py --json bench.json --plot bench.png
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_effconv.cli import bench  # noqa: E402

if __name__ == "__main__":
    sys.exit(bench.main())
