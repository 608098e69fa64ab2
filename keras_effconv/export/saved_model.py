"""SavedModel export, written atomically and checked against the Keras model before it is kept."""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from keras_effconv import implementation
from keras_effconv._paths import temp_prefix


def saved_model_outputs(path, x):
    """Run the `serve` endpoint of a SavedModel written by `model.export` on `x`."""
    reloaded = tf.saved_model.load(path)
    return np.asarray(reloaded.serve(tf.constant(x)))


def replace_path(src, dst):
    """Move `src` (file or folder) to `dst`, replacing what is there; `dst` is never left half-written."""
    if os.path.isdir(dst) and not os.path.islink(dst):
        parent = os.path.dirname(os.path.abspath(dst))
        old = tempfile.mkdtemp(prefix=temp_prefix(dst) + "old.", dir=parent)
        os.replace(dst, os.path.join(old, "previous"))
        try:
            os.replace(src, dst)
        except OSError:
            os.replace(os.path.join(old, "previous"), dst)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def export_saved_model(model, path, parity_inputs=None, atol=1e-4):
    """`model.export(path, format="tf_saved_model")`, via a temporary folder next to `path`.

    With `parity_inputs`, the exported `serve` endpoint is compared with `model(parity_inputs)`; if the
    max abs difference exceeds `atol` nothing is written. Returns the max abs difference (or None).
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=temp_prefix(path) + "tmp.", dir=parent)
    try:
        staged = os.path.join(scratch, "saved_model")
        with implementation.exporting():
            model.export(staged, format="tf_saved_model", verbose=False)
        diff = None
        if parity_inputs is not None:
            expected = np.asarray(model(parity_inputs, training=False))
            diff = float(np.max(np.abs(saved_model_outputs(staged, parity_inputs) - expected)))
            if not diff <= atol:
                raise ParityError(f"SavedModel output differs from Keras by {diff:.3g} > atol={atol:g}", diff)
        replace_path(staged, path)
        return diff
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class ParityError(AssertionError):
    """The exported model's outputs differ from the Keras model's beyond the tolerance."""

    def __init__(self, message, max_abs_diff=None):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
