"""Build (or find in the cache) the keras_effconv C++ op library and print its path.

    python tools/build_ops.py            # build if needed, print the library path
    python tools/build_ops.py --force    # rebuild even if cached
    python tools/build_ops.py --info     # also print how it was built (flags, CUDA status)

Same build as `keras_effconv.ops.custom.load_custom_ops()`; see that module for the environment
variables (KERAS_EFFCONV_CXX, KERAS_EFFCONV_CXXFLAGS, KERAS_EFFCONV_CUDA, KERAS_EFFCONV_CACHE_DIR).
"""

import argparse
import json
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached library exists")
    parser.add_argument("--info", action="store_true", help="load it and print the build info")
    args = parser.parse_args(argv)

    from keras_effconv.ops import custom  # pylint: disable=import-outside-toplevel

    try:
        path = custom.build_library(force=args.force, verbose=True)
        if args.info:
            custom.load_custom_ops()
            print(json.dumps(custom.build_info(), indent=1))
    except custom.CustomOpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
