"""The models' input contract, and ImageNet prediction decoding.

**One input contract.** Every factory (`EffResNet50(...)`, `EffResNet20(...)`, `ChannelNetV1(...)`,
`DemoCNN(...)`, the keras twins built by `get_model`) takes `include_preprocessing=True` by default:
the model accepts RGB pixels in [0, 255] and normalises them inside, with two layers at the start
(`rescaling`: x / 255, `normalization`: ImageNet "torch" mean `(0.485, 0.456, 0.406)` and std
`(0.229, 0.224, 0.225)`), as keras' EfficientNetV2 and ConvNeXt do. The TFLite converter folds them into one builtin SUB
and one MUL, so exported models take raw pixels too. So `preprocess_input` is a
pass-through, kept for keras.applications-style code. With `include_preprocessing=False` the model
has no such layers: feed it `normalize(images)` (the old explicit "torch" normalisation).

`decode_predictions` turns `(batch, 1000)` ImageNet predictions into `(class_name,
class_description, score)` tuples with the standard ImageNet class index JSON, fetched once with
`keras.utils.get_file` (the same file, URL and md5 as `keras.applications`).
"""

import json
import os

import keras
from keras.applications import imagenet_utils as keras_imagenet_utils

from keras_effconv.applications import download as download_lib

PREPROCESSING_MODE = "torch"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The class index used by keras.applications (keras.src.applications.imagenet_utils).
KERAS_CLASS_INDEX_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
)
KERAS_CLASS_INDEX_HASH = "c2c37ea517e94d9795004a39431a14cb"

# Where `decode_predictions` gets the class index. Point these at a mirror (with its hash) to
# avoid the Google Storage download; the defaults delegate to Keras.
CLASS_INDEX_URL = KERAS_CLASS_INDEX_URL
CLASS_INDEX_HASH = KERAS_CLASS_INDEX_HASH

_CLASS_INDEX_CACHE = {}  # local path -> {str(index): [wnid, description]}


def preprocess_input(x, data_format=None):
    """A placeholder for keras.applications-style code: returns `x` unchanged.

    The models normalise inside (`include_preprocessing=True`, the default), so they take RGB
    pixels in [0, 255]. For a model built with `include_preprocessing=False`, use `normalize`.
    `data_format` is accepted for API compatibility and ignored.
    """
    del data_format
    return x


def normalize(x, data_format=None):
    """The "torch" ImageNet normalisation that `include_preprocessing=True` models do inside.

    Scales RGB pixels in [0, 255] to [0, 1], then normalises each channel with the ImageNet mean and
    std: `keras.applications.imagenet_utils.preprocess_input(x, data_format, mode="torch")`. Use it
    only with models built with `include_preprocessing=False`. NumPy float inputs are modified in
    place, as in Keras.

    Raises:
        ValueError: unknown `data_format`.
    """
    return keras_imagenet_utils.preprocess_input(x, data_format=data_format, mode=PREPROCESSING_MODE)


def preprocessing_layers(x):
    """Apply the in-model normalisation (layers `rescaling` and `normalization`) to tensor `x`."""
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
    variance = [s * s for s in IMAGENET_STD]
    return keras.layers.Normalization(mean=list(IMAGENET_MEAN), variance=variance, name="normalization")(x)


def _load_class_index(url, file_hash, cache_dir):
    if url == KERAS_CLASS_INDEX_URL:
        fname, subdir = "imagenet_class_index.json", "models"  # Keras's own cache entry
    else:
        fname, subdir = download_lib.url_fname(url), download_lib.CACHE_SUBDIR
    path = download_lib.download(
        url, fname, file_hash=file_hash, cache_subdir=subdir, cache_dir=cache_dir
    )
    key = (os.path.realpath(path), os.path.getmtime(path))
    if key not in _CLASS_INDEX_CACHE:
        with open(path) as f:
            _CLASS_INDEX_CACHE[key] = json.load(f)
    return _CLASS_INDEX_CACHE[key]


def decode_predictions(preds, top=5, class_index_url=None, file_hash=None, cache_dir=None):
    """Decodes the predictions of an Eff model trained on ImageNet.

    With the defaults this is exactly `keras.applications.imagenet_utils.decode_predictions`
    (which downloads `imagenet_class_index.json` into `~/.keras/models/` on first use).
    With `class_index_url` (or a changed module-level `CLASS_INDEX_URL`) or `cache_dir`, the
    class index JSON (`{"0": ["n01440764", "tench"], ...}`) is fetched from there with
    `keras.utils.get_file` and checked against `file_hash` if given.

    Args:
        preds: NumPy array or tensor of shape `(samples, classes)`; `classes` must equal the
            number of entries of the class index (1000 for ImageNet).
        top: how many top guesses to return per sample.
        class_index_url: optional http(s):// or file:// URL of the class index JSON.
        file_hash: optional sha256/md5 of that JSON (for the module default URL,
            `CLASS_INDEX_HASH`).
        cache_dir: optional cache root (default `$KERAS_HOME` or `~/.keras`).

    Returns:
        One list per sample of `(class_name, class_description, score)` tuples, best first.

    Raises:
        ValueError: `preds` is not 2D with one column per class, or the JSON fails its hash.
    """
    url = class_index_url or CLASS_INDEX_URL
    if file_hash is None and url == CLASS_INDEX_URL:
        file_hash = CLASS_INDEX_HASH
    if url == KERAS_CLASS_INDEX_URL and file_hash == KERAS_CLASS_INDEX_HASH and cache_dir is None:
        return keras_imagenet_utils.decode_predictions(preds, top=top)

    class_index = _load_class_index(url, file_hash, cache_dir)
    preds = keras.ops.convert_to_numpy(preds)
    if preds.ndim != 2 or preds.shape[1] != len(class_index):
        raise ValueError(
            "`decode_predictions` expects a batch of predictions (i.e. a 2D array of shape "
            f"(samples, {len(class_index)})). Received array with shape: {preds.shape}"
        )
    results = []
    for pred in preds:
        top_indices = pred.argsort()[-top:][::-1]
        result = [tuple(class_index[str(i)]) + (pred[i],) for i in top_indices]
        result.sort(key=lambda t: t[2], reverse=True)
        results.append(result)
    return results
