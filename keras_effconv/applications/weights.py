"""Pretrained-weights presets, weights loading and the argument checks shared by the factories.

The model factories (`EffResNet50(..., weights=...)` etc.) accept, like `keras.applications`:

- `None`: random initialization;
- a preset name registered for the model with `register_preset` (e.g. `"imagenet"`);
- the path to a local weights file (`.weights.h5`, `.keras` or legacy `.h5`);
- an `http://`, `https://` or `file://` URL, downloaded once with `keras.utils.get_file` into
  `$KERAS_HOME/keras_effconv/` (default `~/.keras/keras_effconv/`).

No ImageNet weights are published yet, so the built-in registry is empty and `weights="imagenet"`
raises a `ValueError` that explains how to get weights (train with `effconv train`, then pass a
path/URL or `register_preset(...)`).

Call sequence in a factory (see `EffResNet50`):

```python
input_shape = validate_application_args(
    "EffResNet50", weights, include_top, classes, input_shape,
    default_size=224, min_size=32,
    classifier_activation=classifier_activation, require_flatten=include_top,
)
...  # build `model` with `input_shape`
load_application_weights(model, "EffResNet50", weights, include_top)
```
"""

import copy
import hashlib
import os
import shutil
import tempfile
import urllib.parse

import keras

CACHE_SUBDIR = "keras_effconv"
URL_SCHEMES = ("http", "https", "file")
DEFAULT_PRESET_CLASSES = 1000

# model_name -> preset_name -> {"variants": {True|False: {"url", "file_hash"}}, "config": {...}}
_PRESETS = {}


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def _check_hash(file_hash, name="file_hash"):
    if not isinstance(file_hash, str) or len(file_hash) not in (32, 64):
        raise ValueError(
            f"`{name}` must be a sha256 (64 hex digits) or md5 (32 hex digits) string; "
            f"received {name}={file_hash!r}"
        )
    try:
        int(file_hash, 16)
    except ValueError:
        raise ValueError(
            f"`{name}` must be a hexadecimal sha256 or md5 digest; received {name}={file_hash!r}"
        ) from None
    return file_hash.lower()


def _hash_algorithm(file_hash):
    return "sha256" if len(file_hash) == 64 else "md5"


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
    file_hash = _check_hash(file_hash)
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


def _no_imagenet_message(model_name):
    stem = model_name.lower()
    available = list_presets(model_name)
    others = f" Registered presets for {model_name}: {available}." if available else ""
    return (
        f"No pretrained ImageNet weights are published yet for {model_name}, so "
        f"`weights='imagenet'` is not available.{others} To get weights, train the model, e.g. "
        f"`effconv train --model {model_name} ...` (or convert weights trained elsewhere) and "
        f"save them with `model.save_weights('{stem}.weights.h5')`; then either pass "
        f"`weights='/path/to/{stem}.weights.h5'` (or an http(s):// or file:// URL), or register "
        "a preset with `keras_effconv.applications.weights.register_preset("
        f"'{model_name}', 'imagenet', url, file_hash, include_top=...)` and pass "
        "`weights='imagenet'`. Use `weights=None` for random initialization."
    )


def _classify_weights(model_name, weights, include_top=None):
    """-> (kind, value) with kind in {"none", "preset", "url", "path"}; ValueError if invalid.

    Presets win over paths (a file called "imagenet" in the working directory is not picked up
    when an "imagenet" preset exists). When `include_top` is given, a preset must have that variant.
    """
    if weights is None:
        return "none", None
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise ValueError(
            "The `weights` argument should be either `None` (random initialization), a preset "
            "name, the path to a weights file, or an http(s):// or file:// URL. "
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
    path = os.path.expanduser(weights)
    if os.path.exists(path):
        return "path", os.path.abspath(path)
    available = list_presets(model_name)
    raise ValueError(
        "The `weights` argument should be either `None` (random initialization), a preset name "
        f"registered for {model_name} (available: {available or 'none'}), the path to an "
        "existing weights file, or an http(s):// or file:// URL. "
        f"Received: weights={weights!r}, which is neither a preset nor an existing file."
    )


# ----------------------------------------------------------------------------------------------
# Download
# ----------------------------------------------------------------------------------------------


def _cache_root(cache_dir=None):
    """`cache_dir`, else `$KERAS_HOME` (read now, not at import), else Keras's default."""
    if cache_dir is None:
        cache_dir = os.environ.get("KERAS_HOME")
    if cache_dir is None:
        try:  # honours KERAS_HOME as it was when Keras was imported, and Keras's own fallbacks
            from keras.src.backend.config import keras_home

            cache_dir = keras_home()
        except ImportError:
            cache_dir = os.path.join(os.path.expanduser("~"), ".keras")
    cache_dir = os.path.expanduser(os.fspath(cache_dir))
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError:
        pass
    if not os.access(cache_dir, os.W_OK):  # same fallback as keras.utils.get_file
        cache_dir = os.path.join(tempfile.gettempdir(), ".keras")
    return cache_dir


def cache_dir_for(cache_dir=None, cache_subdir=CACHE_SUBDIR):
    """The directory downloaded weights go to (`$KERAS_HOME/keras_effconv` by default)."""
    return os.path.join(_cache_root(cache_dir), cache_subdir)


def _file_hash(path, algorithm):
    hasher = hashlib.sha256() if algorithm == "sha256" else hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def download(origin, fname, file_hash=None, cache_subdir=CACHE_SUBDIR, cache_dir=None):
    """Fetch `origin` into the cache with `keras.utils.get_file` and return the local path.

    A cached file is reused when it matches `file_hash` (or, without a hash, when it exists). The
    download goes to a private staging directory next to the cache entry and is moved into place
    with `os.replace` only after `get_file` checked the hash, so an interrupted or corrupt download
    never appears in the cache (`get_file` itself leaves a file that fails the hash check in place),
    and concurrent downloads of the same file cannot see each other's partial files.

    Raises:
        ValueError: the downloaded file does not match `file_hash` (the message gives the expected
            and the actual digest); nothing is left in the cache.
        OSError: the URL could not be fetched.
    """
    if file_hash is not None:
        file_hash = _check_hash(file_hash)
    datadir = os.path.join(_cache_root(cache_dir), cache_subdir)
    os.makedirs(datadir, exist_ok=True)
    target = os.path.join(datadir, fname)
    if os.path.exists(target):
        if file_hash is None:
            return target
        if _file_hash(target, _hash_algorithm(file_hash)) == file_hash:
            return target
        os.remove(target)  # stale or corrupt cache entry: never leave it behind

    staging = tempfile.mkdtemp(prefix=f".{fname}.", suffix=".download", dir=datadir)
    try:
        staged = os.path.join(staging, fname)
        try:
            # An absolute cache_subdir makes get_file write exactly into `staging`.
            path = keras.utils.get_file(
                fname, origin, file_hash=file_hash, cache_subdir=staging, cache_dir=datadir
            )
        except ValueError:
            if file_hash is not None and os.path.exists(staged):
                algorithm = _hash_algorithm(file_hash)
                actual = _file_hash(staged, algorithm)
                if actual != file_hash:
                    raise ValueError(
                        f"The file downloaded from {origin} does not have the expected "
                        f"{algorithm} hash: expected {file_hash}, got {actual}. The file is "
                        f"corrupt or was replaced; it was not kept in the cache ({datadir})."
                    ) from None
            raise
        except Exception as e:  # get_file raises a bare Exception on URL errors
            raise OSError(f"Could not download {origin}: {e}") from e
        os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


_KNOWN_SUFFIXES = (".weights.h5", ".weights.json", ".keras", ".h5")


def _url_basename(url):
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not name:
        raise ValueError(f"Cannot get a file name from the weights URL {url!r}")
    return name


def _preset_fname(model_name, preset_name, include_top, url):
    base = _url_basename(url)
    suffix = next((s for s in _KNOWN_SUFFIXES if base.endswith(s)), "_" + base)
    return f"{model_name}_{preset_name}_{'top' if include_top else 'notop'}{suffix}"


def _url_fname(url):
    # Prefix with a digest of the URL so different URLs with the same basename do not collide.
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:12] + "_" + _url_basename(url)


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
    if kind == "preset":
        variant = _PRESETS[model_name][value]["variants"][bool(include_top)]
        fname = _preset_fname(model_name, value, bool(include_top), variant["url"])
        return download(variant["url"], fname, file_hash=variant["file_hash"], cache_dir=cache_dir)
    return download(value, _url_fname(value), file_hash=file_hash, cache_dir=cache_dir)


def load_model_weights(model, path):
    """`model.load_weights(path)`, with a `ValueError` naming the file when it does not fit.

    Keras matches weights by layer name and shape: a file with fewer layers, other layer names or
    other shapes is rejected. Extra layers in the file are ignored by Keras (so a top file loads
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
    """`resolve_weights` + `load_model_weights`; a no-op for `weights=None`. Returns the model."""
    path = resolve_weights(
        model_name, weights, include_top, file_hash=file_hash, cache_dir=cache_dir
    )
    if path is not None:
        load_model_weights(model, path)
    return model
