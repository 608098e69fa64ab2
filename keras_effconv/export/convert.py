"""Export a Keras model to SavedModel or TFLite with a parity check, leaving no partial output.

`export_model` converts (TFLite through `keras_effconv.export.tflite.to_tflite`, builtins only),
compares the exported model with the Keras model on `parity_inputs`, and only then moves the result
into place (temporary file/folder + `os.replace`). fp32 exports must match within `atol` (default
1e-4, max abs difference of the outputs) or nothing is written; float16 and int8 exports report the
max abs difference and the top-1 agreement with the Keras model.
"""

import contextlib
import dataclasses
import io
import os
import tempfile

import numpy as np

from keras_effconv._paths import check_output_file
from keras_effconv._paths import check_output_folder
from keras_effconv._paths import clean_stale_temporaries
from keras_effconv._paths import temp_prefix
from keras_effconv.export.saved_model import ParityError
from keras_effconv.export.saved_model import export_saved_model
from keras_effconv.export.tflite import LiteRTRunner
from keras_effconv.export.tflite import assert_builtins_only
from keras_effconv.export.tflite import to_tflite

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = (None, "float16", "int8")


@dataclasses.dataclass
class ExportReport:
    path: str
    format: str
    quantize: str = None
    size_bytes: int = None
    max_abs_diff: float = None
    top1_agreement: float = None
    parity_samples: int = 0
    atol: float = None
    ops: list = None

    @property
    def enforced(self):
        """fp32 exports are held to `atol`; quantized ones are reported only."""
        return self.quantize is None

    def lines(self):
        kind = self.format + (f" ({self.quantize})" if self.quantize else " (fp32)")
        out = [f"Exported {kind}: {self.path} ({_human_size(self.size_bytes)})"]
        if self.ops:
            out.append(f"  TFLite ops (builtins only): {', '.join(self.ops)}")
        if self.max_abs_diff is not None:
            check = f" (limit {self.atol:g}: OK)" if self.enforced else " (quantized: reported, not enforced)"
            out.append(
                f"  Parity vs Keras on {self.parity_samples} inputs: max abs diff {self.max_abs_diff:.3g}{check}, "
                f"top-1 agreement {self.top1_agreement:.1%}"
            )
        return out


def _human_size(size):
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def path_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def compare(expected, actual):
    """(max abs diff, top-1 agreement) of two [N, classes] output arrays."""
    expected, actual = np.asarray(expected, "float32"), np.asarray(actual, "float32")
    diff = float(np.max(np.abs(expected - actual)))
    agreement = float(np.mean(expected.reshape(len(expected), -1).argmax(-1) == actual.reshape(len(actual), -1).argmax(-1)))
    return diff, agreement


def representative_dataset(samples):
    """A `TFLiteConverter.representative_dataset` over float32 samples [N, H, W, C]."""
    samples = np.asarray(samples, "float32")

    def generate():
        for sample in samples:
            yield [sample[None]]

    return generate


def random_inputs(model, count=16, seed=0):
    """Uniform random pixels in [0, 255] for the model's input shape."""
    shape = tuple(model.input_shape[1:])
    return np.random.default_rng(seed).uniform(0, 255, (count,) + shape).astype("float32")


def _run_in_batches(fn, x, batch=32):
    return np.concatenate([np.asarray(fn(x[i : i + batch])) for i in range(0, len(x), batch)])


def check_output(output, format="tflite", overwrite=False):
    """ValueError now, not after the conversion, if `output` cannot receive a `format` export.

    A .tflite file may replace an existing file; a SavedModel may replace an existing non-empty folder
    only with `overwrite`. Either must be writable. Temporaries of an earlier, killed export of the
    same `output` are removed first.
    """
    clean_stale_temporaries(output)  # from an export killed earlier
    if format == "tflite":
        check_output_file(output, "export output")
    else:
        check_output_folder(output, "export output", allow_non_empty=overwrite,
                            fix="pass overwrite=True (--overwrite) to replace it, or choose another output")


def export_model(model, output, format="tflite", quantize=None, calibration=None, parity_inputs=None, atol=1e-4,
                 num_threads=2, overwrite=False):
    """Export `model` to `output` and check it; returns an `ExportReport`.

    calibration: float32 samples [N, H, W, C] (pixels as the model takes them) for int8 calibration.
    parity_inputs: inputs for the parity check (default: `calibration`, else 16 random images).
    Raises ParityError (and writes nothing) when an fp32 export differs by more than `atol`.
    """
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}; received format={format!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be None, 'float16' or 'int8'; received quantize={quantize!r}")
    if quantize and format != "tflite":
        raise ValueError(f"quantize={quantize!r} needs format='tflite'; received format={format!r}")
    if quantize == "int8" and calibration is None:
        raise ValueError("int8 quantization needs calibration data (--calibration DATA)")
    if not atol >= 0:
        raise ValueError(f"`atol` must be >= 0; received atol={atol!r}")
    check_output(output, format, overwrite)
    if parity_inputs is None:
        parity_inputs = calibration if calibration is not None else random_inputs(model)
    parity_inputs = np.asarray(parity_inputs, "float32")
    output = os.path.abspath(output)
    report = ExportReport(path=output, format=format, quantize=quantize, parity_samples=len(parity_inputs), atol=atol)
    expected = _run_in_batches(lambda x: model(x, training=False), parity_inputs)

    if format == "saved_model":
        export_saved_model(model, output, parity_inputs=parity_inputs, atol=atol)
        from keras_effconv.export.saved_model import saved_model_outputs

        report.max_abs_diff, report.top1_agreement = compare(expected, saved_model_outputs(output, parity_inputs))
        report.size_bytes = path_size(output)
        return report

    rep = representative_dataset(calibration) if calibration is not None else None
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every captured TensorSpec
        flatbuffer = to_tflite(model, quantize=quantize, representative_dataset=rep)
    report.ops = sorted(assert_builtins_only(flatbuffer))
    runner = LiteRTRunner(flatbuffer, num_threads=num_threads)
    report.max_abs_diff, report.top1_agreement = compare(expected, _run_in_batches(runner, parity_inputs))
    if report.enforced and not report.max_abs_diff <= atol:
        raise ParityError(
            f"TFLite output differs from Keras by {report.max_abs_diff:.3g} > atol={atol:g}; nothing written",
            report.max_abs_diff,
        )
    folder = os.path.dirname(output)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(output), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(flatbuffer)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    report.size_bytes = len(flatbuffer)
    return report
