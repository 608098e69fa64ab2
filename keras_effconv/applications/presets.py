"""Presets: a trained model as a directory in the keras-hub layout.

    <preset>/config.json        {"module": "keras_effconv.applications", "class_name": "EffResNet20",
                                 "config": {the factory kwargs that rebuild it}}
    <preset>/model.weights.h5   the weights (float32, or float16 with `weights_dtype="float16"`)
    <preset>/metadata.json      factory, dataset, input size, preprocessing, measured accuracy and the
                                split it was measured on, training command, date, keras and
                                keras_effconv versions, sha256 of the weights file, extra metadata

`save_preset(model, path, ...)` writes one (atomically); every factory loads one with
`weights=<directory>` or, for a built-in preset, `weights=<name>`. Built-in presets are package data:
`keras_effconv/presets/<FactoryName>/<preset name>/` holding the three files. They are found by
scanning that folder, so adding one is copying a directory (no code change); they load offline and
their weights are checked against the sha256 in `metadata.json`.
"""

import datetime
import json
import os
import shutil
import tempfile

import keras
import numpy as np

from keras_effconv.applications import download

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILTIN_ROOT = os.path.join(PACKAGE_ROOT, "presets")  # keras_effconv/presets/<Factory>/<preset>/
WEIGHTS_DTYPES = ("float32", "float16")


def is_preset_dir(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE))


def builtin_presets(model_name=None, root=None):
    """Built-in presets found in the package: {factory: {preset name: directory}} (or, with
    `model_name`, that model's {preset name: directory})."""
    root = root or BUILTIN_ROOT
    found = {}
    if os.path.isdir(root):
        for factory in sorted(os.listdir(root)):
            folder = os.path.join(root, factory)
            names = sorted(n for n in os.listdir(folder) if is_preset_dir(os.path.join(folder, n))) if os.path.isdir(folder) else []
            if names:
                found[factory] = {n: os.path.join(folder, n) for n in names}
    return found.get(model_name, {}) if model_name is not None else found


def _read_json(path, what):
    try:
        with open(path) as f:
            payload = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"The preset has no {what} file: {path!r} does not exist") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"The preset's {what} file {path!r} is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"The preset's {what} file {path!r} must hold a JSON object")
    return payload


class Preset:
    """A preset directory, read and checked: `factory`, `kwargs` (config.json) and `metadata`."""

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        self.name = os.path.basename(self.path)
        config = _read_json(os.path.join(self.path, CONFIG_FILE), CONFIG_FILE)
        self.metadata = _read_json(os.path.join(self.path, METADATA_FILE), METADATA_FILE)
        self.factory, self.kwargs = config.get("class_name"), config.get("config")
        if not isinstance(self.factory, str) or not isinstance(self.kwargs, dict):
            raise ValueError(f"{os.path.join(self.path, CONFIG_FILE)!r} must hold 'class_name' and 'config'")
        self.weights_path = os.path.join(self.path, WEIGHTS_FILE)

    @property
    def include_top(self):
        return bool(self.kwargs.get("include_top", True))

    @property
    def classes(self):
        return self.kwargs.get("classes")

    @property
    def input_shape(self):
        shape = self.kwargs.get("input_shape")
        return tuple(shape) if shape else None

    def check_factory(self, model_name):
        if self.factory != model_name:
            raise ValueError(
                f"The preset {self.path!r} holds a {self.factory} (architecture), not a {model_name}; load it "
                f"with keras_effconv.applications.{self.factory}(weights=...) or pass a {model_name} preset"
            )

    def check_weights(self):
        """The weights file exists and matches the sha256 in metadata.json (else ValueError)."""
        expected = self.metadata.get("weights_sha256")
        if not os.path.isfile(self.weights_path):
            raise ValueError(f"The preset {self.path!r} has no weights file {WEIGHTS_FILE}")
        actual = download.digest(self.weights_path, "sha256")
        if actual != expected:
            raise ValueError(
                f"The preset weights {self.weights_path!r} are corrupt or were replaced: sha256 {actual}, "
                f"but metadata.json says weights_sha256={expected!r}"
            )

    def check_top(self):
        if not self.include_top:
            raise ValueError(
                f"The preset {self.path!r} was saved without its classifier (include_top=False); "
                "build the model with include_top=False to load it"
            )

    def load_into(self, model, include_top):
        """Check, then load the weights (`include_top=False`: the backbone's weights only)."""
        if include_top:
            self.check_top()
        self.check_weights()
        from keras_effconv.applications import weights as weights_lib

        weights_lib.load_model_weights(model, self.weights_path)
        return model


def _to_float16(source, target):
    """Copy the Keras weights file `source` to `target` with float32 arrays stored as float16."""
    import h5py

    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                dst.create_dataset(name, data=data.astype(np.float16) if data.dtype == np.float32 else data)
            else:
                dst.require_group(name)
            dst[name].attrs.update(dict(obj.attrs))

        src.visititems(copy)
        dst.attrs.update(dict(src.attrs))


def _write_json(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def save_preset(model, path, *, dataset=None, accuracy=None, accuracy_split=None, training_command=None,
                weights_dtype="float32", overwrite=False, **metadata):
    """Write `model` (built by a keras_effconv factory) as a preset directory at `path`.

    Args:
        dataset: what it was trained on, e.g. "cifar10 (../shared/data/cifar10-train, 45k/5k split)".
        accuracy: measured top-1 accuracy in [0, 1]; accuracy_split: the split it was measured on.
        training_command: the exact command that trained it.
        weights_dtype: "float32" or "float16" (half the size; loads back into float32 models
            exactly as stored).
        overwrite: replace an existing preset at `path`.
        **metadata: extra JSON-serialisable entries for metadata.json.

    The directory is written to a temporary sibling and moved into place with `os.replace`, so
    `path` never holds a half-written preset. Returns the `Preset` read back.
    """
    from keras_effconv import __version__
    from keras_effconv.applications import _builder

    spec = _builder.spec(model)
    if spec is None:
        raise ValueError(
            f"model={model.name!r} was not built by a keras_effconv factory, so its config is unknown; build it "
            "with the factory (e.g. m = EffResNet20(classes=10)) and load the checkpoint (m.load_weights(path))"
        )
    if weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(f"`weights_dtype` must be one of {WEIGHTS_DTYPES}; received weights_dtype={weights_dtype!r}")
    if accuracy is not None and not 0.0 <= float(accuracy) <= 1.0:
        raise ValueError(f"`accuracy` must be a fraction in [0, 1]; received accuracy={accuracy!r}")
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"`path` already exists; pass overwrite=True to replace it; received path={path!r}")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".preset", dir=parent)
    try:
        weights_path = os.path.join(staging, WEIGHTS_FILE)
        if weights_dtype == "float16":
            full = os.path.join(staging, "float32.weights.h5")
            model.save_weights(full)
            _to_float16(full, weights_path)
            os.remove(full)
        else:
            model.save_weights(weights_path)
        config = spec["config"]
        _write_json(os.path.join(staging, CONFIG_FILE),
                    {"module": "keras_effconv.applications", "class_name": spec["factory"], "config": config})
        preprocessing = ("RGB in [0, 255], normalised inside the model (ImageNet 'torch' mean/std)"
                         if config["include_preprocessing"] else "none in the model: feed normalize(RGB in [0, 255])")
        _write_json(os.path.join(staging, METADATA_FILE), {
            **metadata,
            "factory": spec["factory"], "dataset": dataset, "input_shape": config["input_shape"],
            "classes": config["classes"], "include_top": config["include_top"], "preprocessing": preprocessing,
            "accuracy": None if accuracy is None else float(accuracy), "accuracy_split": accuracy_split,
            "training_command": training_command,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "keras_version": keras.__version__, "keras_effconv_version": __version__,
            "weights_dtype": weights_dtype, "weights_sha256": download.digest(weights_path, "sha256"),
            "weights_bytes": os.path.getsize(weights_path),
        })
        os.chmod(staging, 0o755)
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
            os.replace(path, os.path.join(old, "preset"))
        os.replace(staging, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return Preset(path)
