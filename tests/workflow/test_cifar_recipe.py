"""Smoke test of the recipes (keras_effconv.training.recipes, behind recipes/*/train.py) on a few
generated TFRecords.

Never reads the shared CIFAR-10 data: the records are generated in tmp_path.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.training import recipes


def write_records(folder, n=40, shards=2, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for shard in range(shards):
        path = os.path.join(folder, f"train-{shard:05d}-of-{shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(shard, n, shards):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                feature = {
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_jpeg(image).numpy()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 10])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return folder


@pytest.mark.slow
def test_recipe_trains_and_writes_results(tmp_path):
    data = write_records(str(tmp_path / "records"))
    results = str(tmp_path / "results.json")
    argv = [
        "--model", "EffResNet20", "--data", data, "--output", str(tmp_path / "run"), "--epochs", "2",
        "--batch-size", "8", "--steps-per-epoch", "2", "--results", results, "--run-name", "smoke",
        "--save-preset", str(tmp_path / "preset"), "--tta", "flip-translate",
    ]
    args = recipes.parse_args("cifar10", argv)
    assert args.batch_size == 8 and args.augment == "crop" and args.lr == 0.2 and not args.depthwise_decay
    result = recipes.run(args, "smoke", log=lambda *_: None, recipe="cifar10")
    assert result["num_train"] == 36 and result["num_validation"] == 4  # every 10th record validates
    assert len(result["history"]["val_accuracy"]) == 2 and len(result["history"]["epoch_seconds"]) == 2
    assert 0.0 <= result["val_accuracy_best_flip_tta"] <= 1.0  # flip-translate scores flip too
    assert 0.0 <= result["val_accuracy_best_flip_translate_tta"] <= 1.0
    assert result["macs"] > 0 and result["params"] > 0
    assert np.isfinite(result["history"]["loss"]).all()
    for name in ("best.keras", "last.keras", "log.csv", "run.json", "result.json"):
        assert os.path.exists(tmp_path / "run" / name)
    with open(results) as f:
        assert json.load(f)["runs"]["smoke"]["model"] == "EffResNet20"
    # --save-preset: the best checkpoint, with the record's accuracy, budget and command.
    with open(tmp_path / "preset" / "metadata.json") as f:
        meta = json.load(f)
    assert meta["accuracy"] == pytest.approx(result["val_accuracy_best"]) and meta["training_command"] == "smoke"
    assert (meta["epochs"], meta["seed"], meta["macs"]) == (2, result["seed"], result["macs"])
    assert meta["flip_tta_accuracy"] == result["val_accuracy_best_flip_tta"]
    # --tta changes only the scoring: not a recipe change
    assert result["recipe_changes"] == meta["recipe_changes"] == {"batch_size": 8, "data": data, "steps_per_epoch": 2}
    from keras_effconv.applications import EffResNet20

    model = EffResNet20(weights=str(tmp_path / "preset"))
    best = keras.saving.load_model(str(tmp_path / "run" / "best.keras"), compile=False)
    for a, b in zip(model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_recipe_defaults_and_overrides():
    args = recipes.parse_args("imagenette", ["--epochs", "3"])
    assert args.epochs == 3 and args.augment == "inception" and args.image_size == (112, 112)
    assert recipes.parse_args("cifar10", []).augment == "crop"
    with pytest.raises(ValueError, match="recipe='mnist'"):
        recipes.parse_args("mnist", [])


def test_recipe_changes_name_and_set_apart_the_run():
    """Options set away from the recipe's defaults are recorded and named; where and how long a run
    trains is not a recipe change."""
    plain = recipes.parse_args("cifar10", ["--model", "ResNet20", "--epochs", "50", "--seed", "1", "--output", "x",
                                           "--jit-compile", "--label-smoothing", "0.1"])
    assert recipes.recipe_changes("cifar10", plain) == {}
    assert recipes.default_run_name(plain, recipes.recipe_changes("cifar10", plain)) == "ResNet20-50ep-seed1"
    changed = recipes.parse_args("cifar10", ["--cutmix", "1.0", "--augment", "randaugment", "--label-smoothing", "0.2"])
    changes = recipes.recipe_changes("cifar10", changed)
    assert changes == {"augment": "randaugment", "cutmix": 1.0, "label_smoothing": 0.2}
    assert recipes.default_run_name(changed, changes) == \
        "EffResNet20-15ep-seed0-augmentrandaugment-cutmix1-label-smoothing0.2"
    assert recipes.recipe_changes(None, changed) == {}


def test_screen_variants_fit_a_quarter_of_resnet20():
    """recipes/cifar10/screen.py registers EffSICNet layouts with per-stage steps, each within ResNet20's MACs / 4."""
    import runpy

    from keras_effconv import applications
    from keras_effconv.analysis import count_macs
    from keras_effconv.layers import SIConv2D

    script = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "cifar10", "screen.py")
    variants = runpy.run_path(script, run_name="screen")["VARIANTS"]
    budget = count_macs(applications.ResNet20()) / 4
    for name, config in variants.items():
        model = applications.get_model(name)
        assert count_macs(model) <= budget, name
        sics = [layer.depth for layer in model.layers if isinstance(layer, SIConv2D)]
        assert sics == [n - 1 for n in config["steps"] if n > 1], name
        assert model.output.shape[-1] == 10 and model.input.shape[1:] == (32, 32, 3)


def test_recipe_presets_word_their_data_as_the_shipped_ones():
    """A recipe run on its own data and split describes them in the preset as the shipped presets do;
    a run on other data or another split keeps `effconv train`'s wording (an empty override)."""
    from keras_effconv.applications import presets
    from keras_effconv.training.config import TrainConfig

    for recipe, model, counts in (("cifar10", "ResNet20", (45000, 5000, 32)), ("imagenette", "EffResNet50", (8523, 946, 112))):
        config = TrainConfig(data=recipes.RECIPES[recipe]["data"], val_split=recipes.RECIPES[recipe]["val_split"])
        result = {"num_train": counts[0], "num_validation": counts[1], "input_shape": [counts[2], counts[2], 3]}
        shipped = presets.Preset(presets.builtin_presets(model)[recipe]).metadata
        wording = recipes.dataset_metadata(recipe, config, result)
        assert wording == {key: shipped[key] for key in ("dataset", "accuracy_split")}
        assert recipes.dataset_metadata(recipe, TrainConfig(data="elsewhere", val_split=0.1), result) == {}
        assert recipes.dataset_metadata(recipe, TrainConfig(data=config.data, val_split=0.2), result) == {}
