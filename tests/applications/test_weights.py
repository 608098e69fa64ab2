"""Weights presets, download/cache and the shared application argument checks.

Everything is served from a real HTTP server on 127.0.0.1 (no internet): the tests build a tiny
model, save its top / no-top weights, serve them and load them back through the real
`keras.utils.get_file` path.
"""

import hashlib
import os

import keras
import numpy as np
import pytest

from keras_effconv.applications import validation as V
from keras_effconv.applications import weights as W
from tests.loopback import LoopbackServer
from tests.loopback import sha256

MODEL = "TinyEffTest"


# A tiny factory written the way the real ones are meant to be (validate -> build -> load)


def tiny_model(
    include_top=True,
    weights=None,
    input_shape=None,
    classes=1000,
    classifier_activation="softmax",
    cache_dir=None,
):
    input_shape = V.validate_application_args(
        MODEL,
        weights,
        include_top,
        classes,
        input_shape,
        default_size=32,
        min_size=16,
        classifier_activation=classifier_activation,
        require_flatten=include_top,
    )
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    model = keras.Model(inputs, x, name="tiny")
    W.load_application_weights(model, MODEL, weights, include_top, cache_dir=cache_dir)
    return model


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.standard_normal(w.shape).astype("float32"))
    return model


def _backbone_weights(model):
    return [np.array(w) for w in model.weights if not w.path.startswith("predictions")]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Weights files (top, no-top) of a randomized tiny model, served on loopback."""
    root = tmp_path_factory.mktemp("served")
    source = _randomize(tiny_model(include_top=True, classes=1000), seed=1)
    top = root / "tiny_top.weights.h5"
    source.save_weights(str(top))
    backbone = keras.Model(source.input, source.get_layer("avg_pool").output)
    notop = root / "tiny_notop.weights.h5"
    backbone.save_weights(str(notop))
    with LoopbackServer(root) as server:
        yield {"server": server, "root": root, "source": source, "top": top, "notop": notop}


@pytest.fixture(autouse=True)
def clean_registry():
    W.unregister_preset(MODEL)
    yield
    W.unregister_preset(MODEL)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _register(served, preset="imagenet", top_hash=None, notop=True, config=None):
    server = served["server"]
    W.register_preset(
        MODEL, preset, server.url("tiny_top.weights.h5"),
        top_hash or sha256(served["top"]), include_top=True, config=config,
    )
    if notop:
        W.register_preset(
            MODEL, preset, server.url("tiny_notop.weights.h5"),
            sha256(served["notop"]), include_top=False,
        )


def _cache_files(keras_home):
    d = keras_home / W.CACHE_SUBDIR
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


X = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")


# Registry


def test_register_list_get_unregister(served):
    assert W.list_presets(MODEL) == []
    _register(served, config={"description": "test"})
    _register(served, preset="other", notop=False)
    assert W.list_presets(MODEL) == ["imagenet", "other"]
    assert W.list_presets()[MODEL] == ["imagenet", "other"]
    info = W.get_preset(MODEL, "imagenet")
    assert set(info["variants"]) == {True, False}
    assert info["config"]["description"] == "test"
    info["variants"].clear()  # a copy
    assert set(W.get_preset(MODEL, "imagenet")["variants"]) == {True, False}
    W.unregister_preset(MODEL, "other")
    assert W.list_presets(MODEL) == ["imagenet"]


def test_builtin_registry_has_no_imagenet():
    for model_name, presets in W.list_presets().items():
        assert "imagenet" not in presets, model_name


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"url": "/local/file.weights.h5"}, "url"),
        ({"url": "ftp://host/x.weights.h5"}, "url"),
        ({"file_hash": "abc"}, "file_hash"),
        ({"file_hash": "z" * 64}, "file_hash"),
        ({"preset_name": "a/b"}, "preset_name"),
        ({"include_top": 1}, "include_top"),
        ({"config": {"classes": 0}}, "classes"),
    ],
)
def test_register_preset_rejects_bad_arguments(kwargs, match):
    args = {
        "model_name": MODEL, "preset_name": "p", "url": "https://h/x.weights.h5",
        "file_hash": "0" * 64, "include_top": True,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        W.register_preset(**args)


# Presets over HTTP


def test_preset_top_and_notop_load(served, keras_home):
    _register(served)
    source = served["source"]

    model = tiny_model(include_top=True, weights="imagenet")
    np.testing.assert_allclose(model.predict(X, verbose=0), source.predict(X, verbose=0), atol=1e-6)

    notop = tiny_model(include_top=False, weights="imagenet")
    for a, b in zip(_backbone_weights(notop), _backbone_weights(source)):
        np.testing.assert_array_equal(a, b)
    assert notop.output.shape == (None, 4)

    # Both variants are in the cache under $KERAS_HOME/keras_effconv, nothing else.
    assert _cache_files(keras_home) == [
        f"{MODEL}_imagenet_notop.weights.h5", f"{MODEL}_imagenet_top.weights.h5"
    ]


def test_preset_is_cached(served, keras_home):
    _register(served)
    before = len(served["server"].requests)
    path1 = W.resolve_weights(MODEL, "imagenet", include_top=False)
    path2 = W.resolve_weights(MODEL, "imagenet", include_top=False)
    assert path1 == path2 and os.path.dirname(path1) == str(keras_home / W.CACHE_SUBDIR)
    assert len(served["server"].requests) == before + 1
    assert sha256(path1) == sha256(served["notop"])


def test_explicit_cache_dir(served, keras_home, tmp_path):
    _register(served)
    path = W.resolve_weights(MODEL, "imagenet", True, cache_dir=tmp_path / "elsewhere")
    assert path.startswith(str(tmp_path / "elsewhere" / W.CACHE_SUBDIR))
    assert _cache_files(keras_home) == []


def test_hash_mismatch_raises_and_leaves_nothing(served, keras_home):
    wrong = "0" * 64
    _register(served, top_hash=wrong)
    with pytest.raises(ValueError) as info:
        W.resolve_weights(MODEL, "imagenet", include_top=True)
    msg = str(info.value)
    assert wrong in msg and sha256(served["top"]) in msg and "expected" in msg
    assert _cache_files(keras_home) == []  # no corrupt file, no staging directory

    with pytest.raises(ValueError, match="expected"):
        tiny_model(include_top=True, weights="imagenet")
    assert _cache_files(keras_home) == []


def test_md5_hash_mismatch_reports_md5(served, keras_home):
    wrong = "f" * 32
    _register(served, top_hash=wrong, notop=False)
    actual = hashlib.md5(served["top"].read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=f"md5.*{wrong}.*{actual}"):
        W.resolve_weights(MODEL, "imagenet", include_top=True)
    assert _cache_files(keras_home) == []


def test_corrupt_cache_entry_is_replaced(served, keras_home):
    _register(served)
    cached = keras_home / W.CACHE_SUBDIR / f"{MODEL}_imagenet_top.weights.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    path = W.resolve_weights(MODEL, "imagenet", include_top=True)
    assert path == str(cached) and sha256(cached) == sha256(served["top"])


def test_corrupt_cache_entry_removed_when_download_also_bad(served, keras_home):
    wrong = "1" * 64
    _register(served, top_hash=wrong, notop=False)
    cached = keras_home / W.CACHE_SUBDIR / f"{MODEL}_imagenet_top.weights.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stale")
    with pytest.raises(ValueError, match=wrong):
        W.resolve_weights(MODEL, "imagenet", include_top=True)
    assert _cache_files(keras_home) == []


def test_missing_url_raises_oserror(served, keras_home):
    W.register_preset(MODEL, "gone", served["server"].url("nope.weights.h5"), "0" * 64, True)
    with pytest.raises(OSError, match="nope.weights.h5"):
        W.resolve_weights(MODEL, "gone", include_top=True)
    assert _cache_files(keras_home) == []


def test_missing_preset_variant(served, keras_home):
    _register(served, notop=False)
    with pytest.raises(ValueError, match="no include_top=False variant"):
        tiny_model(include_top=False, weights="imagenet")


# Paths and raw URLs


def test_local_path_and_pathlike(served):
    for weights in (str(served["top"]), served["top"]):
        model = tiny_model(include_top=True, weights=weights)
        np.testing.assert_allclose(
            model.predict(X, verbose=0), served["source"].predict(X, verbose=0), atol=1e-6
        )
    assert W.resolve_weights(MODEL, served["notop"], include_top=False) == str(served["notop"])


def test_file_url(served, keras_home):
    url = served["notop"].as_uri()
    assert url.startswith("file://")
    model = tiny_model(include_top=False, weights=url)
    for a, b in zip(_backbone_weights(model), _backbone_weights(served["source"])):
        np.testing.assert_array_equal(a, b)
    (name,) = _cache_files(keras_home)
    assert name.endswith("_tiny_notop.weights.h5")


def test_raw_http_url_with_and_without_hash(served, keras_home):
    url = served["server"].url("tiny_top.weights.h5")
    path = W.resolve_weights(MODEL, url, include_top=True)
    assert sha256(path) == sha256(served["top"])
    good = W.resolve_weights(MODEL, url, include_top=True, file_hash=sha256(served["top"]))
    assert good == path
    with pytest.raises(ValueError, match="expected " + "2" * 64):
        W.resolve_weights(MODEL, url, include_top=True, file_hash="2" * 64)
    assert _cache_files(keras_home) == []  # the cached copy failed the hash: removed too


def test_unsupported_url_scheme():
    with pytest.raises(ValueError, match="s3://bucket/w.weights.h5"):
        W.resolve_weights(MODEL, "s3://bucket/w.weights.h5", include_top=True)


def test_nonexistent_path_names_weights(tmp_path):
    missing = str(tmp_path / "missing.weights.h5")
    with pytest.raises(ValueError, match="weights=.*missing.weights.h5"):
        W.resolve_weights(MODEL, missing, include_top=True)
    with pytest.raises(ValueError, match="missing.weights.h5"):
        tiny_model(weights=missing)
    with pytest.raises(ValueError, match="weights=42"):
        V.validate_application_args(MODEL, 42, True)


def test_none_weights():
    assert W.resolve_weights(MODEL, None, include_top=True) is None


# "imagenet" without a preset


def test_imagenet_without_preset_gives_guidance():
    for call in (
        lambda: W.resolve_weights("EffResNet50", "imagenet", include_top=True),
        lambda: V.validate_application_args("EffResNet50", "imagenet", True),
    ):
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert "No pretrained ImageNet weights" in msg and "EffResNet50" in msg
        assert "effconv train" in msg and "register_preset" in msg and "weights=" in msg


# Argument validation


def test_classes_must_match_preset(served, keras_home):
    _register(served)
    with pytest.raises(ValueError, match="`classes` should be 1000.*classes=10"):
        tiny_model(include_top=True, weights="imagenet", classes=10)
    # Without the top any number of classes is fine (and nothing is checked against it).
    V.validate_application_args(MODEL, "imagenet", False, classes=10, input_shape=(40, 40, 3))
    # The preset config records the classes.
    W.register_preset(
        MODEL, "small", served["server"].url("tiny_top.weights.h5"), "0" * 64, True,
        config={"classes": 10},
    )
    V.validate_application_args(MODEL, "small", True, classes=10, default_size=32)
    with pytest.raises(ValueError, match="should be 10"):
        V.validate_application_args(MODEL, "small", True, classes=1000, default_size=32)


def test_classifier_activation(served):
    _register(served)
    for weights in ("imagenet", str(served["top"])):
        with pytest.raises(ValueError, match="classifier_activation='relu'"):
            V.validate_application_args(MODEL, weights, True, classifier_activation="relu")
        for ok in (None, "softmax", keras.activations.softmax):
            V.validate_application_args(MODEL, weights, True, classifier_activation=ok)
        V.validate_application_args(MODEL, weights, False, classifier_activation="relu")
    V.validate_application_args(MODEL, None, True, classifier_activation="relu")


def test_preset_input_shape_rules(served):
    _register(served)
    args = dict(default_size=32, min_size=16)
    assert V.validate_application_args(MODEL, "imagenet", True, **args) == (32, 32, 3)
    with pytest.raises(ValueError, match="`imagenet` weights.*should be \\(32, 32, 3\\)"):
        V.validate_application_args(MODEL, "imagenet", True, input_shape=(64, 64, 3), **args)
    with pytest.raises(ValueError, match="3 channels"):
        V.validate_application_args(MODEL, "imagenet", False, input_shape=(64, 64, 1), **args)
    assert V.validate_application_args(MODEL, "imagenet", False, **args) == (None, None, 3)
    # Paths are not constrained (as in Keras).
    shape = V.validate_application_args(
        MODEL, str(served["top"]), True, input_shape=[64, 64, 1], **args
    )
    assert shape == (64, 64, 1)
    # The preset's default_size overrides the factory default.
    W.register_preset(
        MODEL, "big", served["server"].url("tiny_top.weights.h5"), "0" * 64, True,
        config={"default_size": 48},
    )
    assert V.validate_application_args(MODEL, "big", True, **args) == (48, 48, 3)


# load_model_weights


def test_load_model_weights_mismatch_names_file(served):
    wrong_classes = tiny_model(include_top=True, classes=10)
    with pytest.raises(ValueError, match="tiny_top.weights.h5.*does not match"):
        W.load_model_weights(wrong_classes, served["top"])
    # A no-top file cannot fill a model with a top.
    with pytest.raises(ValueError, match="tiny_notop.weights.h5"):
        W.load_model_weights(tiny_model(include_top=True), served["notop"])
    # ... and as a factory argument the error still names the file.
    with pytest.raises(ValueError, match="tiny_notop.weights.h5"):
        tiny_model(include_top=True, weights=str(served["notop"]))


def test_load_model_weights_garbage_and_missing(tmp_path):
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="garbage.weights.h5"):
        W.load_model_weights(tiny_model(), garbage)
    with pytest.raises(ValueError, match="nothere.weights.h5"):
        W.load_model_weights(tiny_model(), tmp_path / "nothere.weights.h5")
