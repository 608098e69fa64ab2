"""`effconv` subcommands end to end on tiny generated data (in-process), and their error paths."""

import json
import os

import pytest

from tests.workflow.conftest import leftovers
from tests.workflow.conftest import make_folder
from tests.workflow.conftest import make_tfrecords

TRAIN = ("train", "--model", "DemoCNN", "--epochs", "2", "--batch-size", "8", "--quiet", "--warmup-epochs", "0")


@pytest.mark.parametrize("command", ["", "demo", "train", "evaluate", "export", "summary", "bench", "profile"])
def test_help(cli, command):
    code, out, _ = cli(*([command] if command else []), "--help")
    assert code == 0 and "usage: effconv" in out and "example" in out.lower()


def test_no_command_is_a_usage_error(cli):
    code, _, err = cli()
    assert code == 2 and "required" in err


def test_summary(cli):
    code, out, _ = cli("summary", "DemoCNN", "--input-shape", "32,32,3", "--classes", "5")
    assert code == 0 and "conv0_0" in out and "Total" in out
    code, out, _ = cli("summary", "--list")
    assert code == 0 and "DemoCNN" in out.split()


def test_summary_unknown_model(cli):
    code, _, err = cli("summary", "NoSuchNet")
    assert code == 2 and "Unknown model name='NoSuchNet'" in err and "available:" in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run on an image folder, shared by the evaluate/export tests."""
    from keras_effconv.cli.main import main

    root = tmp_path_factory.mktemp("trained")
    folder = make_folder(root / "images", classes=3, per_class=8)
    out = str(root / "run")
    assert main([*TRAIN, "--data", folder, "--val-split", "0.25", "--output", out]) == 0
    return folder, out


def test_train_writes_checkpoints_and_logs(trained):
    folder, out = trained
    for name in ("best.keras", "last.keras", "log.csv", "run.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, "backup")), "backup is removed after a finished run"
    assert any(files for _, _, files in os.walk(os.path.join(out, "tensorboard")))
    assert leftovers(out) == []
    run = json.load(open(os.path.join(out, "run.json")))
    assert run["class_names"] == ["class_0", "class_1", "class_2"] and run["num_validation"] == 6
    assert open(os.path.join(out, "log.csv")).read().splitlines()[0].startswith("epoch")


def test_train_refuses_to_clobber_a_finished_run(cli, trained):
    folder, out = trained
    code, _, err = cli(*TRAIN, "--data", folder, "--output", out)
    assert code == 2 and "--overwrite" in err


def test_evaluate(cli, trained):
    folder, out = trained
    code, out_text, _ = cli("evaluate", os.path.join(out, "best.keras"), "--data", folder, "--json")
    metrics = json.loads(out_text)
    assert code == 0 and metrics["examples"] == 24 and 0 <= metrics["accuracy"] <= 1
    code, out_text, _ = cli("evaluate", os.path.join(out, "best.keras"), "--data", folder,
                            "--val-split", "0.25", "--subset", "validation")
    assert code == 0 and "examples: 6" in out_text and "accuracy:" in out_text and "chance: 33.33%" in out_text
    code, out_text, _ = cli("evaluate", os.path.join(out, "best.keras"), "--data", folder, "--tta", "flip-translate",
                            "--json")
    tta_accuracy = json.loads(out_text)["accuracy_tta_flip-translate"]
    assert code == 0 and 0 <= tta_accuracy <= 1 and (tta_accuracy * 24) == pytest.approx(round(tta_accuracy * 24))


def test_export_tflite_fp32_parity(cli, trained, tmp_path):
    folder, out = trained
    target = tmp_path / "m.tflite"
    code, text, _ = cli("export", os.path.join(out, "best.keras"), "--format", "tflite", "--data", folder,
                        "--parity-samples", "8", "--output", target)
    assert code == 0 and target.is_file() and "OK" in text and "max abs diff" in text
    assert leftovers(tmp_path) == []
    code, text, _ = cli("evaluate", target, "--data", folder, "--json")  # the .tflite evaluates too
    assert code == 0 and json.loads(text)["examples"] == 24
    code, _, err = cli("evaluate", target, "--data", folder, "--tta", "flip")
    assert code == 2 and "--tta flip needs a .keras model" in err


def test_export_int8_reports_agreement(cli, trained, tmp_path):
    folder, out = trained
    target = tmp_path / "m_int8.tflite"
    code, text, _ = cli("export", os.path.join(out, "best.keras"), "--quantize", "int8", "--calibration", folder,
                        "--calibration-samples", "16", "--output", target)
    assert code == 0 and target.is_file() and "top-1 agreement" in text and "(int8)" in text


def test_export_saved_model(cli, trained, tmp_path):
    folder, out = trained
    target = tmp_path / "sm"
    code, text, _ = cli("export", os.path.join(out, "best.keras"), "--format", "saved_model",
                        "--parity-samples", "4", "--output", target)
    assert code == 0 and (target / "saved_model.pb").is_file() and "OK" in text
    assert leftovers(tmp_path) == []


def test_export_parity_failure_leaves_nothing(cli, trained, tmp_path, monkeypatch):
    from keras_effconv.export import convert

    class OffByOne(convert.LiteRTRunner):  # a broken runtime: every output off by 1
        def __call__(self, x):
            return super().__call__(x) + 1.0

    monkeypatch.setattr(convert, "LiteRTRunner", OffByOne)
    folder, out = trained
    target = tmp_path / "bad.tflite"
    code, text, _ = cli("export", os.path.join(out, "best.keras"), "--parity-samples", "2", "--output", target)
    assert code == 1 and "parity check FAILED" in text
    assert os.listdir(tmp_path) == []


def test_export_int8_needs_calibration(cli, trained, tmp_path):
    _, out = trained
    code, _, err = cli("export", os.path.join(out, "best.keras"), "--quantize", "int8", "--output", tmp_path / "x")
    assert code == 2 and "--calibration" in err


def test_evaluate_missing_model(cli, tmp_path):
    code, _, err = cli("evaluate", tmp_path / "none.keras", "--data", "synthetic:10")
    assert code == 2 and "model file not found" in err


# Bad training input: clear message, exit status 2, no output folder left behind.


def _bad_train(cli, tmp_path, *args):
    out = tmp_path / "out"
    code, _, err = cli(*TRAIN, "--output", out, *args)
    assert code == 2, err
    assert not out.exists(), "a failed run must not leave an output folder"
    assert "Traceback" not in err
    return err


def test_train_missing_folder(cli, tmp_path):
    err = _bad_train(cli, tmp_path, "--data", tmp_path / "missing")
    assert "not found" in err and "missing" in err


def test_train_unknown_model(cli, tmp_path):
    err = _bad_train(cli, tmp_path, "--data", "synthetic:20", "--model", "NoSuchNet")
    assert "Unknown model name='NoSuchNet'" in err


def test_train_mixed_image_sizes(cli, tmp_path):
    folder = make_folder(tmp_path / "mixed", mixed=True)
    err = _bad_train(cli, tmp_path, "--data", folder)
    assert "mixed sizes" in err and "--image-size" in err


def test_train_corrupt_tfrecord(cli, tmp_path):
    paths = make_tfrecords(str(tmp_path / "r"), shards=2, per_shard=6)
    with open(paths[0], "r+b") as f:
        f.seek(40)
        f.write(b"\x00garbage\x00")
    err = _bad_train(cli, tmp_path, "--data", tmp_path / "r")
    assert "corrupt TFRecord file" in err and os.path.basename(paths[0]) in err


def test_train_labels_out_of_range(cli, tmp_path):
    make_tfrecords(str(tmp_path / "r"), shards=1, per_shard=6, labels=[0, 1, 2, 3, 4, 5])
    err = _bad_train(cli, tmp_path, "--data", tmp_path / "r", "--classes", "3")
    assert "label 3 of record 3" in err and "[0, 3)" in err


@pytest.mark.slow
def test_demo(cli, tmp_path):
    code, out, _ = cli("demo", "--model", "DemoCNN", "--epochs", "1", "--examples", "60", "--test-examples", "20",
                       "--quiet", "--output", tmp_path / "demo")
    assert code == 0
    for phrase in ("chance level is 20%", "test (Keras)", "test (TFLite)", "TFLite parity", "DemoCNN.tflite"):
        assert phrase in out
    assert (tmp_path / "demo" / "DemoCNN.tflite").is_file()


@pytest.mark.slow
def test_train_mobilenet_v2_cifar(cli, tmp_path):
    """The CIFAR reference model trains by name like the other registered models (a 2-step smoke run)."""
    code, out, _ = cli("train", "--model", "MobileNetV2CIFAR", "--data", "synthetic:24", "--epochs", "1",
                       "--batch-size", "8", "--quiet", "--warmup-epochs", "0", "--output", tmp_path / "run")
    assert code == 0 and os.path.isfile(tmp_path / "run" / "best.keras")
    assert json.load(open(tmp_path / "run" / "run.json"))["config"]["model"] == "MobileNetV2CIFAR"


def test_bench_unknown_model_is_a_usage_error(cli):
    code, _, err = cli("bench", "--models", "NoSuchNet", "--runtimes", "tf")
    assert code == 2 and "NoSuchNet" in err
