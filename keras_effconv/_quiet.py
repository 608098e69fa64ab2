"""Keep TensorFlow's start-up noise out of the `effconv` console output.

TensorFlow prints oneDNN, CUDA-driver and CPU-feature lines to file descriptor 2 while it loads and
while it first lists devices, before its logging is initialised, so TF_CPP_MIN_LOG_LEVEL cannot
silence them. When this process is the `effconv` CLI (console script or `python -m
keras_effconv.cli.main`) without `--verbose`, `import_tensorflow` runs that start-up with fd 2
redirected to a temporary file and replays it only if the import fails. Library users get
TensorFlow's usual output.
"""

import contextlib
import os
import sys
import tempfile

CLI_MODULE = "keras_effconv.cli.main"


def cli_arguments():
    """The `effconv` arguments when this process runs the CLI, else None."""
    if os.path.basename(sys.argv[0] or "") == "effconv":
        return list(sys.argv[1:])
    argv = list(getattr(sys, "orig_argv", []))
    for i in range(len(argv) - 1):
        if argv[i] == "-m" and argv[i + 1] == CLI_MODULE:
            return argv[i + 2 :]
    return None


def cli_is_quiet(argv=None):
    """True for a CLI run without --verbose (and without EFFCONV_VERBOSE=1)."""
    argv = cli_arguments() if argv is None else argv
    return argv is not None and "--verbose" not in argv and os.environ.get("EFFCONV_VERBOSE") != "1"


ACTIVE = False  # True once the CLI has quieted TensorFlow (then `c_stderr_quieted` captures too)


@contextlib.contextmanager
def captured_fd2(replay_on_error=True):
    """Run the block with file descriptor 2 sent to a temporary file (replayed if the block raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            if replay_on_error:
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def c_stderr_quieted():
    """`captured_fd2` in a quiet CLI run (image decoders print to fd 2 on bad files), else a no-op."""
    return captured_fd2(replay_on_error=False) if ACTIVE else contextlib.nullcontext()


def import_tensorflow(quiet):
    """Import TensorFlow and list its devices; with `quiet`, fd 2 is captured meanwhile."""
    global ACTIVE
    if not quiet or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # later C++ log lines (errors surface as exceptions)
    with captured_fd2():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here, not at import
    ACTIVE = True
    quiet_python_logging()


def quiet_python_logging():
    """TensorFlow/absl Python loggers to ERROR and library warnings off (the CLI's default)."""
    import logging
    import warnings

    for name in ("tensorflow", "absl", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with_absl = sys.modules.get("absl.logging")
    if with_absl is not None:
        with_absl.set_verbosity(with_absl.ERROR)
    warnings.filterwarnings("ignore", module=r"(tensorflow|keras|absl|tf_keras)(\.|$)")
