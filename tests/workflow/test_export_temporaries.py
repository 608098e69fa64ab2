"""Temporaries of a killed export (or checkpoint save) are cleaned on the next run; a live writer's
are kept; a SavedModel swap killed half-way gets the previous export back (issue 16)."""

import os
import subprocess

from keras_effconv import _paths
from tests.workflow.conftest import leftovers
from tests.workflow.test_cli_checks import tiny_model  # noqa: F401 - fixture


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _stale_name(monkeypatch, path, pid, suffix):
    with monkeypatch.context() as m:
        m.setattr(os, "getpid", lambda: pid)
        return os.path.join(os.path.dirname(path), _paths.temp_prefix(path) + suffix)


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path, monkeypatch):
    target = str(tmp_path / "m.tflite")
    dead = _stale_name(monkeypatch, target, _dead_pid(), "x1.tmp")
    live = _stale_name(monkeypatch, target, os.getpid(), "x2.tmp")
    other = str(tmp_path / ".other.tflite.effconv-1.x.tmp")
    for path in (dead, live, other):
        open(path, "w").close()
    assert _paths.clean_stale_temporaries(target) == [os.path.basename(dead)]
    assert not os.path.exists(dead) and os.path.exists(live) and os.path.exists(other)


def test_killed_folder_swap_restores_the_previous_export(tmp_path, monkeypatch):
    target = str(tmp_path / "sm")
    old = _stale_name(monkeypatch, target, _dead_pid(), "old.abc")
    os.makedirs(os.path.join(old, "previous"))
    open(os.path.join(old, "previous", "saved_model.pb"), "w").close()
    scratch = _stale_name(monkeypatch, target, _dead_pid(), "tmp.def")
    os.makedirs(os.path.join(scratch, "saved_model"))
    _paths.clean_stale_temporaries(target)
    assert os.path.isfile(os.path.join(target, "saved_model.pb")) and leftovers(str(tmp_path)) == []


def test_export_cleans_what_a_killed_export_left(cli, tiny_model, tmp_path, monkeypatch):  # noqa: F811
    target = str(tmp_path / "m.tflite")
    stale = _stale_name(monkeypatch, target, _dead_pid(), "k9.tmp")
    with open(stale, "wb") as f:
        f.write(b"half a flatbuffer")
    code, _, err = cli("export", tiny_model, "--parity-samples", "2", "--output", target)
    assert code == 0, err
    assert os.path.isfile(target) and leftovers(str(tmp_path)) == []
