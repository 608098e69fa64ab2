"""ImageNet input preprocessing and prediction decoding for the Eff models.

Preprocessing mode: **"torch"** for every Eff model. Pixels in [0, 255] (RGB) are scaled to [0, 1],
then each channel is normalized with the ImageNet mean `(0.485, 0.456, 0.406)` and standard
deviation `(0.229, 0.224, 0.225)`. This is `keras.applications.imagenet_utils.preprocess_input(x,
mode="torch")`, as used by `keras.applications.densenet`; it is NOT the "caffe" mode of
`keras.applications.resnet` (BGR, mean subtraction only). The models contain no preprocessing
layer: call `preprocess_input` on the images (training recipes and weights presets must use the
same function, or pretrained weights see differently scaled inputs).

`decode_predictions` turns `(batch, 1000)` ImageNet predictions into `(class_name,
class_description, score)` tuples with the standard ImageNet class index JSON, fetched once with
`keras.utils.get_file` (the same file, URL and md5 as `keras.applications`).
"""

import json
import os

import keras
from keras.applications import imagenet_utils as keras_imagenet_utils

from keras_effconv.applications import weights as weights_lib

PREPROCESSING_MODE = "torch"

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
    """Preprocesses a batch of RGB images in [0, 255] for the Eff models ("torch" mode).

    Scales to [0, 1] and normalizes each channel with the ImageNet mean and std; see the module
    docstring. Wraps `keras.applications.imagenet_utils.preprocess_input(x, data_format,
    mode="torch")`.

    Args:
        x: float NumPy array or tensor, 3D or 4D, 3 channels, values in [0, 255]. NumPy float
            inputs are modified in place (pass `np.copy(x)` to avoid it), as in Keras.
        data_format: `"channels_last"`, `"channels_first"` or None for
            `keras.config.image_data_format()`.

    Returns:
        The preprocessed `float32` array / tensor.

    Raises:
        ValueError: unknown `data_format`.
    """
    return keras_imagenet_utils.preprocess_input(
        x, data_format=data_format, mode=PREPROCESSING_MODE
    )


def _load_class_index(url, file_hash, cache_dir):
    if url == KERAS_CLASS_INDEX_URL:
        fname, subdir = "imagenet_class_index.json", "models"  # Keras's own cache entry
    else:
        fname, subdir = weights_lib._url_fname(url), weights_lib.CACHE_SUBDIR
    path = weights_lib.download(
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
