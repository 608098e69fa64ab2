"""The `weights=` argument of every factory: what it may be, where it comes from, loading it.

`weights` may be, like `keras.applications` plus keras-hub presets:
- `None`: random initialization;
- a preset name: a built-in preset shipped in the package (`presets.builtin_presets`, listed by
  `effconv presets`), or one registered with `register_preset` (a weights file at a URL + hash);
- a preset directory written by `save_preset` (config.json, model.weights.h5, metadata.json);
- the path to a local weights file (`.weights.h5`, `.keras` or legacy `.h5`);
- an `http://`, `https://` or `file://` URL, downloaded once with `keras.utils.get_file` into
  `$KERAS_HOME/keras_effconv/` (default `~/.keras/keras_effconv/`), hash-checked (`download.py`).

No ImageNet weights are published, so `weights="imagenet"` raises a `ValueError` that lists the
presets that are available for the model. `weights_source(model_name, weights, include_top)` is what
the factories call (`_builder.build`): it classifies and checks `weights` before the model is built.
"""

import copy
import os
import urllib.parse

from keras_effconv.applications import download as download_lib
from keras_effconv.applications import presets as presets_lib
from keras_effconv.applications.download import CACHE_SUBDIR  # noqa: F401 - part of this module's API
from keras_effconv.applications.download import cache_dir_for  # noqa: F401
from keras_effconv.applications.download import download

URL_SCHEMES = ("http", "https", "file")
DEFAULT_PRESET_CLASSES = 1000

# model_name -> preset_name -> {"variants": {True|False: {"url", "file_hash"}}, "config": {...}}
_PRESETS = {}


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def _url_scheme(value):
    """The lower-cased scheme if `value` looks like a URL (`scheme://...`), else None."""
    if not isinstance(value, str) or "://" not in value:
        return None
    return urllib.parse.urlsplit(value).scheme.lower() or None


def register_preset(model_name, preset_name, url, file_hash, include_top, config=None):
    """Register (or replace) one variant of a named pretrained-weights preset.

    A preset has up to two variants, `include_top=True` (with the classifier) and
    `include_top=False` (the backbone only); call `register_preset` once per variant. Each variant
    is one weights file at `url`, checked against `file_hash` when downloaded.

    Args:
        model_name: The factory name, e.g. `"EffResNet50"` (case-sensitive).
        preset_name: The value users pass as `weights=`, e.g. `"imagenet"`. Must not look like a
            path or URL.
        url: `http://`, `https://` or `file://` URL of the weights file (`.weights.h5`, `.keras`
            or `.h5`).
        file_hash: sha256 (recommended) or md5 hex digest of the file.
        include_top: Whether the file holds the classifier ("top") weights.
        config: Optional dict describing the preset, shared by both variants and merged into
            what was registered before. Keys used by `validate_application_args`:
            `"classes"` (number of classes of the top; default 1000, i.e. ImageNet) and
            `"default_size"` (input size the top was trained at; default: the factory's).
            Other keys (e.g. `"description"`) are kept for `get_preset`.
    """
    for arg, value in (("model_name", model_name), ("preset_name", preset_name)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"`{arg}` must be a non-empty string; received {arg}={value!r}")
    if "/" in preset_name or os.sep in preset_name or "://" in preset_name:
        raise ValueError(
            "`preset_name` must be a plain name, not a path or URL (it would shadow "
            f"weights=<path>); received preset_name={preset_name!r}"
        )
    if _url_scheme(url) not in URL_SCHEMES:
        raise ValueError(
            f"`url` must be an http://, https:// or file:// URL; received url={url!r}"
        )
    file_hash = download_lib.check_hash(file_hash)
    if not isinstance(include_top, bool):
        raise ValueError(
            f"`include_top` must be True or False; received include_top={include_top!r}"
        )
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"`config` must be a dict or None; received config={config!r}")
    config = dict(config or {})
    classes = config.get("classes", DEFAULT_PRESET_CLASSES)
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(
            f"`config['classes']` must be a positive integer; received classes={classes!r}"
        )

    preset = _PRESETS.setdefault(model_name, {}).setdefault(
        preset_name, {"variants": {}, "config": {}}
    )
    preset["variants"][include_top] = {"url": url, "file_hash": file_hash}
    preset["config"].update(config)


def unregister_preset(model_name, preset_name=None):
    """Remove one preset of `model_name`, or all its presets when `preset_name` is None."""
    if preset_name is None:
        _PRESETS.pop(model_name, None)
        return
    presets = _PRESETS.get(model_name, {})
    presets.pop(preset_name, None)
    if not presets:
        _PRESETS.pop(model_name, None)


def list_presets(model_name=None):
    """Registered preset names.

    Returns:
        With `model_name`: a sorted list of that model's preset names (empty if none).
        Without: a dict `{model_name: sorted list of preset names}` for every model with presets.
    """
    if model_name is not None:
        return sorted(_PRESETS.get(model_name, {}))
    return {name: sorted(presets) for name, presets in sorted(_PRESETS.items()) if presets}


def get_preset(model_name, preset_name):
    """A copy of a registered preset.

    Returns:
        `{"variants": {include_top: {"url": ..., "file_hash": ...}}, "config": {...}}`.
    """
    try:
        return copy.deepcopy(_PRESETS[model_name][preset_name])
    except KeyError:
        raise ValueError(
            f"No preset {preset_name!r} is registered for {model_name}; "
            f"available: {list_presets(model_name)}"
        ) from None


def _preset(model_name, name):
    if isinstance(name, str):
        return _PRESETS.get(model_name, {}).get(name)
    return None


# ----------------------------------------------------------------------------------------------
# Classification of the `weights` argument
# ----------------------------------------------------------------------------------------------


def available_presets(model_name):
    """Every preset name `weights=` accepts for `model_name`: built-in and registered, sorted."""
    return sorted(set(presets_lib.builtin_presets(model_name)) | set(list_presets(model_name)))


def _available_text(model_name):
    available = available_presets(model_name)
    return ", ".join(repr(n) for n in available) if available else "none"


def _no_imagenet_message(model_name):
    stem = model_name.lower()
    return (
        f"No pretrained ImageNet weights are published yet for {model_name}, so "
        f"`weights='imagenet'` is not available. Presets available for {model_name}: "
        f"{_available_text(model_name)} (`effconv presets` lists them all). To get weights, train "
        f"the model, e.g. `effconv train --model {model_name} ... --save-preset DIR`, and pass "
        f"`weights=DIR`, or a `model.save_weights('{stem}.weights.h5')` file "
        f"(`weights='/path/to/{stem}.weights.h5'`, or an http(s):// or file:// URL), or register "
        "a URL preset with `keras_effconv.applications.weights.register_preset("
        f"'{model_name}', 'imagenet', url, file_hash, include_top=...)`. Use `weights=None` for "
        "random initialization."
    )


def _classify_weights(model_name, weights, include_top=None):
    """-> (kind, value) with kind in {"none", "preset", "preset_dir", "url", "path"}; ValueError if invalid.

    Order: a preset registered with `register_preset`, a built-in preset, then URLs and paths (a
    file called "imagenet" in the working directory is not picked up when an "imagenet" preset
    exists). "preset_dir" values are directories (built-in or given). When `include_top` is given,
    a registered preset must have that variant.
    """
    if weights is None:
        return "none", None
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise ValueError(
            "The `weights` argument should be either `None` (random initialization), a preset "
            "name, a preset directory, the path to a weights file, or an http(s):// or file:// URL. "
            f"Received: weights={weights!r}"
        )
    preset = _preset(model_name, weights)
    if preset is not None:
        if include_top is not None and bool(include_top) not in preset["variants"]:
            have = ", ".join(f"include_top={v}" for v in sorted(preset["variants"]))
            raise ValueError(
                f"The {model_name} preset weights={weights!r} has no include_top="
                f"{bool(include_top)} variant (registered: {have}). Use include_top="
                f"{not bool(include_top)}, pass `weights=<path or URL>`, or register the "
                f"missing variant with `register_preset(..., include_top={bool(include_top)})`."
            )
        return "preset", weights
    builtin = presets_lib.builtin_presets(model_name).get(weights)
    if builtin is not None:
        return "preset_dir", builtin
    if weights == "imagenet":
        raise ValueError(_no_imagenet_message(model_name))
    scheme = _url_scheme(weights)
    if scheme is not None:
        if scheme not in URL_SCHEMES:
            raise ValueError(
                "Only http://, https:// and file:// URLs are supported for `weights`; "
                f"received weights={weights!r}"
            )
        return "url", weights
    path = os.path.abspath(os.path.expanduser(weights))
    if presets_lib.is_preset_dir(path):
        return "preset_dir", path
    if os.path.isfile(path):
        return "path", path
    if os.path.isdir(path):
        raise ValueError(
            f"weights={weights!r} is a directory but not a preset (no {presets_lib.CONFIG_FILE}); "
            "pass a preset directory written by `save_preset` or a weights file"
        )
    raise ValueError(
        "The `weights` argument should be either `None` (random initialization), a preset name "
        f"for {model_name} (available: {_available_text(model_name)}), a preset directory, the path "
        "to an existing weights file, or an http(s):// or file:// URL. "
        f"Received: weights={weights!r}, which is neither a preset nor an existing file."
    )


class WeightsSource:
    """A checked `weights=` argument: what it implies for the build (`classes`, `default_size`,
    `pretrained`) and `load(model, include_top)`."""

    def __init__(self, model_name, weights, include_top=None):
        self.model_name = model_name
        self.weights = weights
        self.kind, self.value = _classify_weights(model_name, weights, include_top)
        self.preset = presets_lib.Preset(self.value) if self.kind == "preset_dir" else None
        config = _PRESETS[model_name][self.value]["config"] if self.kind == "preset" else {}
        self.classes = config.get("classes", DEFAULT_PRESET_CLASSES) if self.kind == "preset" else None
        self.default_size = config.get("default_size")
        self.name = self.value if self.kind == "preset" else None
        if self.preset is not None:
            self.preset.check_factory(model_name)
            if include_top:
                self.preset.check_top()
            self.classes = self.preset.classes if self.preset.include_top else None
            shape = self.preset.input_shape
            self.default_size = shape[0] if shape and shape[0] is not None and shape[0] == shape[1] else None
            self.name = self.preset.name

    @property
    def pretrained(self):
        return self.kind in ("preset", "preset_dir")

    def load(self, model, include_top, file_hash=None, cache_dir=None):
        if self.preset is not None:
            return self.preset.load_into(model, include_top)
        path = resolve_weights(self.model_name, self.weights, include_top, file_hash=file_hash, cache_dir=cache_dir)
        if path is not None:
            load_model_weights(model, path)
        return model


def weights_source(model_name, weights, include_top=None):
    """Classify and check a factory's `weights` argument; returns a `WeightsSource`."""
    return WeightsSource(model_name, weights, include_top)


# ----------------------------------------------------------------------------------------------
# Public entry points for the factories
# ----------------------------------------------------------------------------------------------


def resolve_weights(model_name, weights, include_top, file_hash=None, cache_dir=None):
    """Turn a factory's `weights=` argument into a local file path (or None).

    Args:
        model_name: The factory name, e.g. `"EffResNet50"`.
        weights: `None`, a preset name registered for `model_name`, a local path, or an http(s)://
            or file:// URL.
        include_top: Selects the preset variant (the top / no-top file).
        file_hash: Optional sha256/md5 digest checked for a raw URL (presets carry their own).
        cache_dir: Cache root; default `$KERAS_HOME`, else `~/.keras`. Files go to
            `<cache_dir>/keras_effconv/`.

    Returns:
        The absolute path of the weights file, or None for `weights=None`.

    Raises:
        ValueError: invalid `weights` (unknown name, missing file, "imagenet" without a registered
            preset, missing preset variant) or a hash mismatch.
        OSError: a URL could not be downloaded.
    """
    kind, value = _classify_weights(model_name, weights, include_top)
    if kind == "none":
        return None
    if kind == "path":
        return value
    if kind == "preset_dir":
        return os.path.join(value, presets_lib.WEIGHTS_FILE)
    if kind == "preset":
        variant = _PRESETS[model_name][value]["variants"][bool(include_top)]
        fname = download_lib.preset_fname(model_name, value, bool(include_top), variant["url"])
        return download(variant["url"], fname, file_hash=variant["file_hash"], cache_dir=cache_dir)
    return download(value, download_lib.url_fname(value), file_hash=file_hash, cache_dir=cache_dir)


def load_model_weights(model, path):
    """`model.load_weights(path)`, with a `ValueError` naming the file when it does not fit.

    Keras 3 matches weights by layer order, type and shape: a file with fewer layers, other layer
    types or other shapes is rejected. Extra layers in the file are ignored by Keras (so a top file loads
    into an `include_top=False` model).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"Weights file {path!r} does not exist")
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise ValueError(
            f"Could not load the weights file {path!r} into model {model.name!r}: the file does "
            "not match the model's architecture (or is not a Keras `.weights.h5` / `.keras` / "
            "`.h5` weights file). The weights must come from the same model built with the same "
            f"`include_top`, `classes` and input channels. Keras said: {e}"
        ) from e
    return model


def load_application_weights(
    model, model_name, weights, include_top, file_hash=None, cache_dir=None
):
    """Load `weights` (anything `weights=` accepts) into `model`; a no-op for None. Returns the model."""
    return weights_source(model_name, weights, include_top).load(model, include_top, file_hash, cache_dir)
