"""Build and cache of the optional C++ op library (`keras_effconv.ops.custom` loads and wraps it).

Building
--------
The library is compiled on first use by `load_custom_ops()` (or ahead of time with
``python tools/build_ops.py``) with the installed TensorFlow's ``tf.sysconfig`` compile/link flags
and ``g++ -O3 -march=native``. It is cached in ``~/.cache/keras_effconv/ops/`` (``$XDG_CACHE_HOME``
or ``$KERAS_EFFCONV_CACHE_DIR`` if set) under a hash of the sources, the TF version and flags, the
compiler, the flags and the CPU model, so a different TF, compiler or machine rebuilds rather than
loading a stale or illegal-instruction library. The build writes to a temporary file and
``os.replace``-s it into place: a killed build never leaves a half-written library. Environment:

- ``KERAS_EFFCONV_CXX``: the C++ compiler (default ``$CXX``, then ``g++``, ``c++``, ``clang++``).
- ``KERAS_EFFCONV_CXXFLAGS``: extra compiler flags (appended; part of the cache key).
- ``KERAS_EFFCONV_CUDA``: ``auto`` (default: build the CUDA kernels when ``nvcc`` is found, TF is a
  CUDA build and a GPU is visible), ``1`` (build them whenever nvcc and a CUDA TF are present) or
  ``0``. ``KERAS_EFFCONV_NVCC`` picks nvcc, ``KERAS_EFFCONV_CUDA_ARCHS`` the GPU architectures
  (default ``75;80;86;89;90``). If the CUDA part fails to compile, the CPU-only library is built
  and `build_info()` says why.

Failures raise `CustomOpsError` (a ``RuntimeError``) saying why: no compiler found, the compile
error with the tail of the compiler's output, or a load failure such as a TF ABI mismatch.
`available()` never raises.
"""

import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import tensorflow as tf

CC_DIR = Path(__file__).resolve().parent / "cc"
LIB_BASENAME = "libkeras_effconv_ops"
ENV_CXX = "KERAS_EFFCONV_CXX"
ENV_CXXFLAGS = "KERAS_EFFCONV_CXXFLAGS"
ENV_CACHE = "KERAS_EFFCONV_CACHE_DIR"
ENV_CUDA = "KERAS_EFFCONV_CUDA"
ENV_NVCC = "KERAS_EFFCONV_NVCC"
ENV_CUDA_ARCHS = "KERAS_EFFCONV_CUDA_ARCHS"
_COMPILE_TIMEOUT = 900
_TAIL_LINES = 30


class CustomOpsError(RuntimeError):
    """The custom op library could not be built or loaded; the message says why."""


def cache_dir():
    """Where built libraries are cached (``$KERAS_EFFCONV_CACHE_DIR`` or ``~/.cache/keras_effconv/ops``)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "keras_effconv" / "ops"


def _sources():
    cc = sorted(p for p in CC_DIR.glob("*.cc") if not p.name.endswith(".cu.cc"))
    headers = sorted(CC_DIR.glob("*.h"))
    cuda = sorted(CC_DIR.glob("*.cu.cc"))
    if not cc:
        raise CustomOpsError(f"no C++ sources found in {CC_DIR} (broken installation?)")
    return cc, headers, cuda


def _which(name):
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def find_compiler():
    """The C++ compiler to use; raises `CustomOpsError` if there is none.

    ``$KERAS_EFFCONV_CXX`` is used as given (an error if it is not an executable); ``$CXX`` is used
    when it names an executable; otherwise g++, c++ or clang++ from PATH.
    """
    value = os.environ.get(ENV_CXX)
    if value:
        path = _which(value)
        if path is None:
            raise CustomOpsError(
                f"no C++ compiler found: {ENV_CXX}={value!r} is not an executable on PATH; "
                f"install g++ or point {ENV_CXX} at a C++ compiler")
        return path
    if os.environ.get("CXX") and _which(os.environ["CXX"]):
        return _which(os.environ["CXX"])
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    raise CustomOpsError(
        f"no C++ compiler found (tried $CXX, g++, c++, clang++ on PATH); install g++ or set {ENV_CXX}")


def _run(cmd, timeout=60):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)


def _compiler_id(compiler):
    try:
        out = _run([compiler, "--version"]).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CustomOpsError(f"no usable C++ compiler: running {compiler} --version failed: {exc}") from exc
    return out.splitlines()[0] if out else compiler


def _supports(compiler, flag):
    try:
        return _run([compiler, flag, "-x", "c++", "-E", os.devnull]).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _cpu_fingerprint():
    """Model name + ISA flags: part of the cache key because the library is built for this CPU."""
    info = {"machine": platform.machine()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features") and key not in info:
                    info[key] = line.split(":", 1)[1].strip()
    except OSError:
        info["processor"] = platform.processor()
    return info


def _tail(text, lines=_TAIL_LINES):
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept)[-4000:]


def _find_nvcc():
    if os.environ.get(ENV_NVCC):
        return _which(os.environ[ENV_NVCC])
    return shutil.which("nvcc") or _which("/usr/local/cuda/bin/nvcc")


def _gencode_flags():
    """SASS for each of ``$KERAS_EFFCONV_CUDA_ARCHS`` (default 75;80;86;89;90) + PTX for the newest."""
    archs = [a.strip() for a in os.environ.get(ENV_CUDA_ARCHS, "75;80;86;89;90").replace(",", ";")
             .split(";") if a.strip()]
    flags = []
    for arch in archs:
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    if archs:
        flags += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
    return flags


def _cuda_library_flags(nvcc):
    """The -L flags nvcc itself links with (it may be a wrapper script outside the CUDA tree)."""
    try:
        out = _run([nvcc, "--dryrun", "-c", "keras_effconv_probe.cu", "-o", os.devnull]).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    flags = []
    for line in out.splitlines():
        if "LIBRARIES=" in line:
            flags += [f.strip('"') for f in shlex.split(line.split("LIBRARIES=", 1)[1])
                      if f.strip('"').startswith("-L") and not f.rstrip('"').endswith("stubs")]
    root = Path(nvcc).resolve().parent.parent
    flags += [f"-L{root / 'lib64'}", f"-L{root / 'lib'}"]
    return flags


def cuda_status():
    """``(build_cuda: bool, reason: str)``: whether the build compiles the CUDA kernels, and why not."""
    mode = os.environ.get(ENV_CUDA, "auto").strip().lower()
    if mode in ("0", "false", "no", "off"):
        return False, f"CUDA kernels disabled by {ENV_CUDA}={mode}"
    nvcc = _find_nvcc()
    if not nvcc:
        return False, "CUDA kernels not built: nvcc not found"
    if not tf.test.is_built_with_cuda():
        return False, "CUDA kernels not built: this TensorFlow is not a CUDA build"
    if mode == "auto" and not tf.config.list_physical_devices("GPU"):
        return False, (f"CUDA kernels not built: no GPU visible to TensorFlow "
                       f"(set {ENV_CUDA}=1 to build them anyway)")
    return True, f"CUDA kernels built with {nvcc}"


def _build_plan():
    compiler = find_compiler()
    compiler_id = _compiler_id(compiler)
    cc, headers, cuda = _sources()
    tf_cflags = list(tf.sysconfig.get_compile_flags())
    tf_lflags = list(tf.sysconfig.get_link_flags())
    arch = ["-march=native"] if _supports(compiler, "-march=native") else []
    quiet = [f for f in ("-Wno-interference-size",) if _supports(compiler, f)]  # Eigen headers
    extra = shlex.split(os.environ.get(ENV_CXXFLAGS, ""))
    cflags = ["-O3", "-fPIC", "-Wno-deprecated-declarations", *quiet, *arch, *tf_cflags, *extra]
    build_cuda, cuda_reason = cuda_status()
    key = hashlib.sha256()
    for path in [*cc, *headers, *(cuda if build_cuda else [])]:
        key.update(path.name.encode())
        key.update(path.read_bytes())
    key.update(json.dumps({
        "tf": tf.__version__, "tf_git": getattr(tf, "__git_version__", ""), "compiler": compiler,
        "compiler_id": compiler_id, "cflags": cflags, "lflags": tf_lflags, "cpu": _cpu_fingerprint(),
        "cuda": build_cuda, "nvcc": _find_nvcc() if build_cuda else None,
        "gencode": _gencode_flags() if build_cuda else None,
    }, sort_keys=True).encode())
    return {
        "compiler": compiler, "compiler_id": compiler_id, "sources": cc, "cuda_sources": cuda,
        "cflags": cflags, "lflags": tf_lflags, "build_cuda": build_cuda,
        "cuda_reason": cuda_reason, "key": key.hexdigest()[:20],
    }


def _library_path(plan, directory):
    return Path(directory) / f"{LIB_BASENAME}-{plan['key']}.so"


def _compile_all(jobs, what):
    """Run the commands two at a time (the machine kind has 2 cores); on the first failure stop the
    others and raise `CustomOpsError` with the tail of the failing command's output."""
    pending = list(jobs)
    running = []  # (name, cmd, proc, output file)
    try:
        deadline = time.monotonic() + _COMPILE_TIMEOUT
        while pending or running:
            while pending and len(running) < 2:
                name, cmd = pending.pop(0)
                log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
                try:
                    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                except OSError as exc:
                    log.close()
                    raise CustomOpsError(f"{what}: could not run {cmd[0]}: {exc}") from exc
                running.append((name, cmd, proc, log))
            for entry in list(running):
                name, cmd, proc, log = entry
                if proc.poll() is None:
                    continue
                running.remove(entry)
                log.seek(0)
                out = log.read()
                log.close()
                if proc.returncode != 0:
                    raise CustomOpsError(
                        f"{what}: {name} failed (exit {proc.returncode}) with {cmd[0]}; "
                        f"last lines of the compiler output:\n{_tail(out)}")
            if time.monotonic() > deadline:
                raise CustomOpsError(f"{what}: timed out after {_COMPILE_TIMEOUT} s")
            time.sleep(0.05)
    finally:
        for _, _, proc, log in running:  # after a failure (or an interrupt) the rest is moot
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


def _build_into(plan, tmp, with_cuda):
    """Compile and link into the temporary directory `tmp`; returns the temporary library path."""
    objects, jobs = [], []
    cflags = list(plan["cflags"])
    if with_cuda:
        include = tf.sysconfig.get_include()
        cflags += ["-DGOOGLE_CUDA=1", f"-I{include}/third_party/gpus/cuda/include"]
    for src in plan["sources"]:
        obj = os.path.join(tmp, src.name + ".o")
        objects.append(obj)
        jobs.append((src.name, [plan["compiler"], "-c", str(src), "-o", obj, *cflags]))
    link_extra = []
    if with_cuda:
        nvcc = _find_nvcc()
        tf_cflags = [f for f in plan["cflags"] if f.startswith(("-I", "-D"))]
        for src in plan["cuda_sources"]:
            obj = os.path.join(tmp, src.name + ".o")
            objects.append(obj)
            jobs.append((src.name, [
                nvcc, "-c", str(src), "-o", obj, "-x", "cu", "-O3", "-std=c++17", "-DGOOGLE_CUDA=1",
                "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", *_gencode_flags(), *tf_cflags]))
        link_extra = [*_cuda_library_flags(nvcc), "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
    _compile_all(jobs, "compiling the keras_effconv ops")
    tmp_lib = os.path.join(tmp, "lib.so")
    _compile_all([("link", [plan["compiler"], "-shared", *objects, "-o", tmp_lib, *plan["lflags"],
                            *link_extra])], "linking the keras_effconv ops")
    return tmp_lib


def _remove_stale_builds(directory, max_age_s=3600):
    """Temporary build directories left by killed builds (never a library: those are renamed)."""
    now = time.time()
    for stale in Path(directory).glob(".build-*"):
        try:
            if now - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass


def build_library(force=False, directory=None, verbose=False):
    """Build (or find in the cache) the op library for this TF/compiler/CPU; returns its path.

    Raises `CustomOpsError` with the reason (no compiler, compile error with the compiler's output
    tail). The library is written to a temporary file first and renamed into place atomically.
    """
    plan = _build_plan()
    directory = Path(directory) if directory is not None else cache_dir()
    output = _library_path(plan, directory)
    info_path = output.with_suffix(".json")
    if output.exists() and not force:
        return output
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CustomOpsError(f"cannot create the op cache directory {directory}: {exc}") from exc
    _remove_stale_builds(directory)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=directory)
    info = {"compiler": plan["compiler_id"], "cflags": plan["cflags"], "tf": tf.__version__,
            "cuda": False, "cuda_reason": plan["cuda_reason"]}
    try:
        if verbose:
            print(f"building {output.name} with {plan['compiler_id']} ...", flush=True)
        tmp_lib = None
        if plan["build_cuda"]:
            try:
                tmp_lib = _build_into(plan, tmp, with_cuda=True)
                info["cuda"] = True
            except CustomOpsError as exc:
                info["cuda_reason"] = f"CUDA kernels not built: the CUDA build failed: {exc}"
                if verbose:
                    print(info["cuda_reason"], flush=True)
        if tmp_lib is None:
            tmp_lib = _build_into(plan, tmp, with_cuda=False)
        tmp_info = os.path.join(tmp, "info.json")
        with open(tmp_info, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        # Same directory as the targets, so os.replace is an atomic rename; the library goes last,
        # so its presence means the build (and its info file) is complete.
        os.replace(tmp_info, info_path)
        os.replace(tmp_lib, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output
