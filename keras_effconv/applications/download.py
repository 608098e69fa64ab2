"""Download into the Keras cache: `keras.utils.get_file` with a file hash, atomic, nothing half-written.

Used for weights given as URLs (`weights="https://..."`, presets registered with `register_preset`)
and for `decode_predictions`' class index.
"""

import hashlib
import os
import shutil
import tempfile
import urllib.parse

import keras

CACHE_SUBDIR = "keras_effconv"


def check_hash(file_hash, name="file_hash"):
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


def hash_algorithm(file_hash):
    return "sha256" if len(file_hash) == 64 else "md5"


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


def digest(path, algorithm):
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
        file_hash = check_hash(file_hash)
    datadir = os.path.join(_cache_root(cache_dir), cache_subdir)
    os.makedirs(datadir, exist_ok=True)
    target = os.path.join(datadir, fname)
    if os.path.exists(target):
        if file_hash is None:
            return target
        if digest(target, hash_algorithm(file_hash)) == file_hash:
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
                algorithm = hash_algorithm(file_hash)
                actual = digest(staged, algorithm)
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


def url_basename(url):
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not name:
        raise ValueError(f"Cannot get a file name from the weights URL {url!r}")
    return name


def preset_fname(model_name, preset_name, include_top, url):
    base = url_basename(url)
    suffix = next((s for s in _KNOWN_SUFFIXES if base.endswith(s)), "_" + base)
    return f"{model_name}_{preset_name}_{'top' if include_top else 'notop'}{suffix}"


def url_fname(url):
    # Prefix with a digest of the URL so different URLs with the same basename do not collide.
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:12] + "_" + url_basename(url)
