"""Up-front checks of output paths, so a long run or conversion cannot fail at its very end.

Each check raises `ValueError` naming the option (`what`) and the path: an existing file where a
folder is wanted (or the reverse), an existing non-empty folder, or a location this process cannot
write (probed by creating and removing a temporary file in the nearest existing folder).
"""

import os
import re
import shutil
import tempfile


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(path, what="output"):
    """`path` (existing folder, or one to create) can receive files; else ValueError."""
    base = _nearest_existing(path)
    if not os.path.isdir(base):
        raise ValueError(f"{what} {str(path)!r} cannot be created: {base!r} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".effconv-write-check.", dir=base)
    except OSError as error:
        raise ValueError(f"{what} {str(path)!r} is not writable: {error.strerror} ({base!r})") from None
    os.close(fd)
    os.remove(probe)


def check_output_folder(path, what="output folder", allow_non_empty=True, fix="remove it or choose another path"):
    """`path` is a folder to write into: not an existing file, writable, empty unless allowed."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {str(path)!r} is an existing file, not a folder; choose another path")
    if not allow_non_empty and os.path.isdir(path) and os.listdir(path):
        raise ValueError(f"{what} {str(path)!r} already exists and is not empty; {fix}")
    check_writable(path, what)


def check_output_file(path, what="output file"):
    """`path` is a file to write (replacing an existing file): not a folder, its folder writable."""
    if os.path.isdir(path):
        raise ValueError(f"{what} {str(path)!r} is an existing folder; give a file name")
    check_writable(os.path.dirname(os.path.abspath(path)), what)


def temp_prefix(path):
    """Prefix of the temporaries written next to `path`: hidden, and naming this process."""
    return f".{os.path.basename(path)}.effconv-{os.getpid()}."


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(path):
    """Remove the temporaries a killed earlier writer of `path` left beside it; returns their names.

    Only names from `temp_prefix` whose process is gone are touched (a live writer's are kept). A
    folder export killed while swapping folders leaves the previous export in ``.old.../previous``: it
    is moved back to `path` when `path` is missing.
    """
    folder, base = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    pattern = re.compile(rf"^\.{re.escape(base)}\.effconv-(\d+)\.")
    removed = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        match = pattern.match(name)
        if not match or _alive(int(match.group(1))):
            continue
        full = os.path.join(folder, name)
        previous = os.path.join(full, "previous")
        if ".old." in name and os.path.exists(previous) and not os.path.exists(path):
            os.replace(previous, path)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            os.remove(full)
        removed.append(name)
    return removed
