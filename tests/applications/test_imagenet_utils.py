"""normalize ("torch" mode), the preprocess_input pass-through and decode_predictions with a class index served on loopback."""

import hashlib
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_effconv.applications import imagenet_utils as U
from keras_effconv.applications import weights as W
from tests.loopback import LoopbackServer

MEAN = np.array([0.485, 0.456, 0.406], "float32")
STD = np.array([0.229, 0.224, 0.225], "float32")


def _images(shape=(2, 5, 5, 3)):
    return np.random.default_rng(0).uniform(0, 255, shape).astype("float32")


def test_normalize_is_torch_mode_and_preprocess_input_passes_through():
    x = _images()
    expected = (x / 255.0 - MEAN) / STD
    assert U.PREPROCESSING_MODE == "torch"
    assert U.preprocess_input(x) is x and U.preprocess_input(x, data_format="channels_first") is x
    np.testing.assert_allclose(U.normalize(x.copy()), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.array(U.normalize(tf.constant(x))), expected, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        U.normalize(x.copy(), data_format="channels_first").shape, x.shape
    )
    first = np.transpose(x, (0, 3, 1, 2)).copy()
    np.testing.assert_allclose(
        U.normalize(first, data_format="channels_first"),
        np.transpose(expected, (0, 3, 1, 2)), rtol=1e-5, atol=1e-5,
    )
    # uint8 input is converted, not wrapped around.
    np.testing.assert_allclose(
        U.normalize(x.astype("uint8")),
        (x.astype("uint8").astype("float32") / 255.0 - MEAN) / STD, rtol=1e-5, atol=1e-5,
    )
    with pytest.raises(ValueError, match="data_format"):
        U.normalize(x, data_format="nhwc")


@pytest.fixture(scope="module")
def class_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    path = root / "imagenet_class_index.json"
    path.write_text(json.dumps(index))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with LoopbackServer(root) as server:
        yield {"url": server.url("imagenet_class_index.json"), "hash": digest, "server": server}


def _preds():
    preds = np.full((2, 1000), 1e-4, "float32")
    preds[0, [7, 3, 999]] = [0.5, 0.3, 0.1]
    preds[1, 42] = 0.9
    return preds


def test_decode_predictions_served_index(class_index, tmp_path):
    out = U.decode_predictions(
        _preds(), top=3, class_index_url=class_index["url"], file_hash=class_index["hash"],
        cache_dir=tmp_path,
    )
    assert [r[:2] for r in out[0]] == [
        ("n00000007", "class_7"), ("n00000003", "class_3"), ("n00000999", "class_999")
    ]
    assert out[0][0][2] == pytest.approx(0.5)
    assert out[1][0][:2] == ("n00000042", "class_42") and len(out[1]) == 3
    # Cached under <cache_dir>/keras_effconv (not Keras's own models/imagenet_class_index.json).
    (cached,) = (tmp_path / W.CACHE_SUBDIR).iterdir()
    assert cached.name.endswith("_imagenet_class_index.json")
    # Tensors work too; a second call uses the cache (no new request).
    n = len(class_index["server"].requests)
    out2 = U.decode_predictions(
        tf.constant(_preds()), top=1, class_index_url=class_index["url"], cache_dir=tmp_path
    )
    assert out2[1][0][:2] == ("n00000042", "class_42")
    assert len(class_index["server"].requests) == n


def test_decode_predictions_module_url(class_index, tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CLASS_INDEX_URL", class_index["url"])
    monkeypatch.setattr(U, "CLASS_INDEX_HASH", class_index["hash"])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert U.decode_predictions(_preds(), top=1)[0][0][:2] == ("n00000007", "class_7")


def test_decode_predictions_bad_hash_and_shape(class_index, tmp_path):
    with pytest.raises(ValueError, match="expected " + "3" * 64):
        U.decode_predictions(
            _preds(), class_index_url=class_index["url"], file_hash="3" * 64, cache_dir=tmp_path
        )
    assert list((tmp_path / W.CACHE_SUBDIR).iterdir()) == []
    with pytest.raises(ValueError, match="shape"):
        U.decode_predictions(
            np.zeros((2, 10)), class_index_url=class_index["url"], cache_dir=tmp_path
        )


def test_decode_predictions_default_delegates_to_keras(monkeypatch):
    """Default source: exactly keras.applications' decode_predictions (its cached index)."""
    keras_utils = pytest.importorskip("keras.src.applications.imagenet_utils")
    fake = {str(i): [f"w{i}", f"d{i}"] for i in range(1000)}
    monkeypatch.setattr(keras_utils, "CLASS_INDEX", fake)  # no download
    preds = _preds()
    expected = keras.applications.imagenet_utils.decode_predictions(preds, top=2)
    assert U.decode_predictions(preds, top=2) == expected
    assert U.decode_predictions(preds, top=2)[0][0][:2] == ("w7", "d7")
