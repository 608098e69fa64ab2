"""Bad CLI input is refused up front (exit 2, one line, nothing written); the CLI is quiet; and
`import keras_effconv` alone registers the layers for `keras.saving.load_model` (issue 16)."""

import os
import subprocess
import sys

import keras
import pytest

from keras_effconv import training
from tests.workflow.test_cli import TRAIN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _one_line_error(code, err, *phrases):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and lines and lines[-1].startswith("effconv "), err
    for phrase in phrases:
        assert phrase in lines[-1], (phrase, err)


@pytest.mark.parametrize("option,value", [
    ("--lr", "-1"), ("--lr", "0"), ("--lr", "nan"), ("--label-smoothing", "5"), ("--label-smoothing", "1"),
    ("--weight-decay", "-1"), ("--mixup", "-1"), ("--cutmix", "-0.5"), ("--warmup-epochs", "-1"),
    ("--epochs", "0"), ("--batch-size", "-8"), ("--batch-size", "2.5"), ("--val-split", "1"), ("--seed", "-1"),
    ("--steps-per-epoch", "0"),
])
def test_train_rejects_out_of_range_numbers(cli, tmp_path, option, value):
    out = tmp_path / "out"
    code, _, err = cli(*TRAIN, "--data", "synthetic:20", "--output", out, option, value)
    _one_line_error(code, err, f"argument {option}", repr(value))
    assert not out.exists()


@pytest.mark.parametrize("option,value", [("--atol", "-1"), ("--parity-samples", "0")])
def test_export_rejects_out_of_range_numbers(cli, tmp_path, option, value):
    code, _, err = cli("export", tmp_path / "m.keras", "--output", tmp_path / "m.tflite", option, value)
    _one_line_error(code, err, f"argument {option}")


@pytest.mark.parametrize("field,value", [
    ("lr", -1.0), ("label_smoothing", 5.0), ("weight_decay", -1.0), ("mixup", -1.0), ("cutmix", float("nan")),
    ("warmup_epochs", -1), ("epochs", 0), ("batch_size", 2.5), ("batch_size", True), ("epochs", "3"),
])
def test_train_config_rejects_bad_numbers(tmp_path, field, value):
    config = training.TrainConfig(output=str(tmp_path / "out"), **{field: value})
    with pytest.raises(ValueError, match=f"`{field}`.*received {field}="):
        training.train(config)
    assert not (tmp_path / "out").exists()


def test_train_output_is_an_existing_file(cli, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    code, _, err = cli(*TRAIN, "--data", "synthetic:20", "--output", target)
    _one_line_error(code, err, "is an existing file")
    assert target.read_text() == "not a folder"


def _read_only_dir():
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return "/sys"
    os.close(fd)
    os.remove(probe)
    pytest.skip("no read-only location on this machine")


def test_train_output_not_writable(cli, tmp_path):
    code, _, err = cli(*TRAIN, "--data", "synthetic:20", "--output", os.path.join(_read_only_dir(), "effconv-x"))
    _one_line_error(code, err, "is not writable")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny .keras model with a keras_effconv layer in it (SIConv2D)."""
    from keras_effconv.layers import SIConv2D

    inputs = keras.Input((8, 8, 4))
    x = SIConv2D(8, 3, padding="same")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = str(tmp_path_factory.mktemp("tiny") / "tiny.keras")
    keras.Model(inputs, outputs).save(path)
    return path


def test_export_onto_an_existing_folder_fails_up_front(cli, tiny_model, tmp_path):
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    code, out, err = cli("export", tiny_model, "--format", "saved_model", "--output", folder)
    _one_line_error(code, err, "already exists and is not empty", "--overwrite")
    assert out == "" and os.listdir(folder) == ["keep.txt"], "checked before the conversion ran"
    code, _, err = cli("export", tiny_model, "--format", "tflite", "--output", folder)
    _one_line_error(code, err, "is an existing folder")


def test_export_to_a_read_only_location_fails_up_front(cli, tiny_model):
    code, out, err = cli("export", tiny_model, "--output", os.path.join(_read_only_dir(), "m.tflite"))
    _one_line_error(code, err, "is not writable")
    assert out == ""


def test_export_saved_model_overwrite(cli, tiny_model, tmp_path):
    folder = tmp_path / "sm"
    folder.mkdir()
    (folder / "old.txt").write_text("x")
    code, _, err = cli("export", tiny_model, "--format", "saved_model", "--parity-samples", "2",
                       "--output", folder, "--overwrite")
    assert code == 0, err
    assert (folder / "saved_model.pb").is_file() and not (folder / "old.txt").exists()


@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04" + bytes(60)], ids=["not-zip", "truncated-zip"])
def test_corrupt_keras_file(cli, tmp_path, content):
    path = tmp_path / "bad.keras"
    path.write_bytes(content)
    code, _, err = cli("evaluate", path, "--data", "synthetic:10")
    _one_line_error(code, err, "bad.keras", "not a readable .keras model file")
    assert "File not found" not in err
    code, _, err = cli("export", path, "--output", tmp_path / "m.tflite")
    _one_line_error(code, err, "not a readable .keras model file")
    with pytest.raises(ValueError, match="bad.keras"):
        training.load_model(str(path))


def _python(code, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "EFFCONV_VERBOSE")}
    return subprocess.run([sys.executable, *args, "-c", code] if code else [sys.executable, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_import_registers_layers_for_load_model(tiny_model):
    """A fresh interpreter: `import keras_effconv` is enough for keras.saving.load_model."""
    code = (
        "import sys, keras, numpy as np, keras_effconv\n"
        "assert 'keras_effconv.training' not in sys.modules and 'keras_effconv.applications' not in sys.modules\n"
        f"m = keras.saving.load_model({tiny_model!r})\n"
        "print(type(m.layers[1]).__name__, m(np.zeros((1, 8, 8, 4), 'float32')).shape)\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SIConv2D", "(1,", "3)"]


def test_cli_help_prints_no_tensorflow_log_lines():
    result = _python(None, "-m", "keras_effconv.cli.main", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: effconv")
    assert result.stderr == "", result.stderr


@pytest.mark.slow
def test_cli_verbose_still_works():
    verbose = _python(None, "-m", "keras_effconv.cli.main", "--verbose", "--help")
    assert verbose.returncode == 0 and verbose.stdout.startswith("usage: effconv")


@pytest.mark.slow
def test_train_and_export_print_only_their_own_output(tmp_path):
    out, target = str(tmp_path / "run"), str(tmp_path / "m.tflite")
    train = _python(None, "-m", "keras_effconv.cli.main", *TRAIN, "--epochs", "1", "--data", "synthetic:24",
                    "--output", out)
    assert train.returncode == 0 and train.stderr == "", train.stderr
    export = _python(None, "-m", "keras_effconv.cli.main", "export", os.path.join(out, "best.keras"),
                     "--parity-samples", "2", "--output", target)
    assert export.returncode == 0 and export.stderr == "", export.stderr
    assert "Exported tflite" in export.stdout
