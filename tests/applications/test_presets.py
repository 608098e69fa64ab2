"""Presets made by the tests (tiny models): save -> load, wrong architecture / classes / corrupt file,
float16 storage, built-in discovery, `effconv presets`, and every preset shipped in the package."""

import json
import os
import shutil

import numpy as np
import pytest

from keras_effconv import applications
from keras_effconv.applications import presets as P
from keras_effconv.cli.main import main as cli

SHAPE = (16, 16, 3)


def pixels(n=2, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype("float32")


def _randomized(model, seed=1):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path else rng.standard_normal(w.shape) * 0.1
        w.assign(value.astype("float32"))
    return model


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def source():
    return _randomized(applications.DemoCNN(input_shape=SHAPE, classes=4))


@pytest.fixture
def preset(source, tmp_path):
    path = tmp_path / "demo_preset"
    applications.save_preset(source, path, dataset="synthetic:64", accuracy=0.75, accuracy_split="validation 20%",
                             training_command="effconv train --model DemoCNN", notes="made by a test")
    return path


def _no_cache(keras_home):
    assert not (keras_home / "keras_effconv").exists() or not os.listdir(keras_home / "keras_effconv")


def test_save_then_load_gives_identical_outputs(source, preset, keras_home):
    assert sorted(os.listdir(preset)) == ["config.json", "metadata.json", "model.weights.h5"]
    meta = json.loads((preset / "metadata.json").read_text())
    for key in ("factory", "dataset", "input_shape", "preprocessing", "accuracy", "accuracy_split", "training_command",
                "date", "keras_version", "keras_effconv_version", "weights_sha256"):
        assert meta[key] is not None, key
    assert meta["factory"] == "DemoCNN" and meta["notes"] == "made by a test" and meta["accuracy"] == 0.75
    config = json.loads((preset / "config.json").read_text())
    assert config["class_name"] == "DemoCNN" and config["config"]["classes"] == 4
    # classes and input shape left at their defaults: the preset's (keras-hub behaviour).
    loaded = applications.DemoCNN(weights=str(preset))
    assert loaded.output_shape == (None, 4) and loaded.input_shape == (None, *SHAPE)
    x = pixels()
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(source(x)))
    assert applications.get_model("DemoCNN", weights=preset).output_shape == (None, 4)  # PathLike too
    _no_cache(keras_home)


def test_include_top_false_loads_the_backbone_only(source, preset):
    backbone = applications.DemoCNN(include_top=False, weights=str(preset), input_shape=(24, 24, 3), pooling="avg")
    assert backbone.output_shape == (None, 128)
    for w in backbone.weights:
        np.testing.assert_array_equal(np.asarray(w), np.asarray(source.get_layer(w.path.split("/")[0]).weights[
            [v.path for v in source.get_layer(w.path.split("/")[0]).weights].index(w.path)]))


@pytest.mark.parametrize(
    "factory, kwargs, match",
    [
        ("EffResNet20", {}, "holds a DemoCNN \\(architecture\\), not a EffResNet20"),
        ("DemoCNN", {"classes": 7}, "`classes` should be 4.*classes=7"),
        ("DemoCNN", {"input_shape": (32, 32, 3)}, "input_shape` should be \\(16, 16, 3\\)"),
        ("DemoCNN", {"classifier_activation": "relu"}, "classifier_activation='relu'"),
    ],
)
def test_mismatches_give_clear_errors(preset, keras_home, factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        applications.get_model(factory, weights=str(preset), **kwargs)
    _no_cache(keras_home)


def test_corrupted_weights_file_is_refused(preset, keras_home):
    weights = preset / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt.*weights_sha256"):
        applications.DemoCNN(weights=str(preset))
    weights.unlink()
    with pytest.raises(ValueError, match="no weights file"):
        applications.DemoCNN(weights=str(preset))
    (preset / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json.*not valid JSON"):
        applications.DemoCNN(weights=str(preset))
    _no_cache(keras_home)


def test_backbone_preset_cannot_fill_a_top(tmp_path):
    backbone = applications.DemoCNN(include_top=False, input_shape=SHAPE)
    path = applications.save_preset(backbone, tmp_path / "notop").path
    with pytest.raises(ValueError, match="without its classifier"):
        applications.DemoCNN(weights=path, input_shape=SHAPE)
    assert applications.DemoCNN(include_top=False, weights=path).output_shape[-1] == 128


def test_float16_storage_round_trip(source, tmp_path):
    full = applications.save_preset(source, tmp_path / "fp32")
    half = applications.save_preset(source, tmp_path / "fp16", weights_dtype="float16")
    assert half.metadata["weights_dtype"] == "float16"
    assert os.path.getsize(half.weights_path) < 0.7 * os.path.getsize(full.weights_path)
    loaded = applications.DemoCNN(weights=half.path)
    for stored, original in zip(loaded.weights, source.weights):
        assert stored.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(stored), np.asarray(original).astype("float16").astype("float32"))


def test_save_preset_is_atomic_and_checks_its_arguments(source, preset, tmp_path):
    import keras

    with pytest.raises(ValueError, match="already exists"):
        applications.save_preset(source, preset)
    before = P.Preset(preset).metadata["date"]
    applications.save_preset(source, preset, overwrite=True, dataset="again")
    assert P.Preset(preset).metadata["dataset"] == "again" and before
    with pytest.raises(ValueError, match="weights_dtype"):
        applications.save_preset(source, tmp_path / "x", weights_dtype="int8")
    with pytest.raises(ValueError, match="accuracy"):
        applications.save_preset(source, tmp_path / "x", accuracy=75.0)
    inputs = keras.Input(SHAPE)
    with pytest.raises(ValueError, match="not built by a keras_effconv factory"):
        applications.save_preset(keras.Model(inputs, keras.layers.Flatten()(inputs)), tmp_path / "x")
    assert sorted(os.listdir(tmp_path)) == ["demo_preset"]  # no staging or half-written directories


def test_builtin_presets_are_found_by_scanning_the_package_folder(preset, tmp_path, monkeypatch, capsys):
    root = tmp_path / "builtin"
    monkeypatch.setattr(P, "BUILTIN_ROOT", str(root))
    assert cli(["presets"]) == 0 and "No built-in presets" in capsys.readouterr().out
    with pytest.raises(ValueError, match="Presets available for DemoCNN: none"):
        applications.DemoCNN(weights="imagenet")
    shutil.copytree(preset, root / "DemoCNN" / "tiny")  # adding a preset is copying a directory
    assert P.builtin_presets() == {"DemoCNN": {"tiny": str(root / "DemoCNN" / "tiny")}}
    model = applications.DemoCNN(weights="tiny")
    assert model.output_shape == (None, 4)
    with pytest.raises(ValueError, match="Presets available for DemoCNN: 'tiny'"):
        applications.DemoCNN(weights="imagenet")
    with pytest.raises(ValueError, match="available: 'tiny'"):
        applications.DemoCNN(weights="tinny")
    assert cli(["presets"]) == 0
    out = capsys.readouterr().out
    assert "DemoCNN" in out and "tiny" in out and "75.00% (validation 20%)" in out
    assert cli(["presets", "--model", "EffResNet20"]) == 0 and "No built-in presets" in capsys.readouterr().out
    assert cli(["presets", "--model", "Nope"]) == 2


def _shipped():
    return [(m, p) for m, entries in P.builtin_presets().items() for p in entries]


@pytest.mark.parametrize("model_name, preset_name", _shipped())
def test_every_shipped_preset_exists_matches_its_hash_and_loads(model_name, preset_name):
    """Runs for every preset found in keras_effconv/presets/ (none until trained weights ship)."""
    preset = P.Preset(P.builtin_presets(model_name)[preset_name])
    assert preset.factory == model_name
    assert os.path.isfile(preset.weights_path)
    preset.check_weights()
    for key in ("dataset", "accuracy", "accuracy_split", "training_command", "date", "input_shape"):
        assert preset.metadata.get(key) is not None, f"{model_name}/{preset_name}: metadata lacks {key}"
    model = applications.get_model(model_name, weights=preset_name)
    assert model.output_shape[-1] == preset.classes
    assert model.input_shape[1:] == preset.input_shape


def test_shipped_presets_are_package_data():
    import tomllib

    with open(os.path.join(os.path.dirname(P.PACKAGE_ROOT), "pyproject.toml"), "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["keras_effconv"]
    assert "presets/*/*/*.json" in data and "presets/*/*/*.h5" in data


def test_effconv_train_save_preset_loads_into_the_bare_factory(tmp_path, capsys):
    from keras_effconv import training

    out, preset = tmp_path / "run", tmp_path / "preset"
    argv = ["train", "--model", "DemoCNN", "--data", "synthetic:32", "--image-size", "16,16", "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "8", "--warmup-epochs", "0", "--augment", "none", "--quiet",
            "--output", str(out), "--save-preset", str(preset)]
    assert cli(argv) == 0
    assert "preset:" in capsys.readouterr().out
    meta = P.Preset(preset).metadata
    best = json.loads((out / "run.json").read_text())["best"]
    assert meta["accuracy"] == pytest.approx(best["val_accuracy"]) and meta["accuracy_split"].startswith("validation")
    command = meta["training_command"]
    assert command.startswith("effconv train ") and "--save-preset" not in command
    for words in ("--model DemoCNN", "--data synthetic:32", "--image-size 16,16", "--steps-per-epoch 2", "--quiet"):
        assert words in command
    assert meta["dataset"] == "synthetic:32" and meta["class_names"]
    model = applications.DemoCNN(weights=str(preset))  # classes and input size from the preset
    checkpoint = training.load_model(str(out / "best.keras"))
    x = pixels(3)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(checkpoint(x)), atol=1e-6)
    # An existing folder that is not a preset is never replaced.
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    assert cli(argv[:-1] + [str(tmp_path / "keep"), "--overwrite"]) == 2
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"


def test_feature_extractor_on_the_imagenette_preset_gives_trained_c2_to_c5():
    """The shipped backbone feeds detection/segmentation heads: C2..C5 from declared levels, trained weights."""
    if "imagenette" not in P.builtin_presets("EffResNet50"):
        pytest.skip("no imagenette preset shipped")
    backbone = applications.EffResNet50(weights="imagenette", include_top=False, input_shape=(112, 112, 3))
    features = applications.feature_extractor(backbone)
    assert [tuple(o.shape[1:3]) for o in features.outputs] == [(28, 28), (14, 14), (7, 7), (4, 4)]
    full = applications.EffResNet50(weights="imagenette")
    trained = {w.path: np.asarray(w) for w in full.weights}
    shared = [w for w in features.weights if w.path in trained]
    assert len(shared) == len(features.weights)
    # Equal to the independently loaded full preset (random initialisations would differ).
    assert all(np.array_equal(np.asarray(w), trained[w.path]) for w in shared)
