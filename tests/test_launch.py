"""Entry points restart once with their allocator settings (launch.py): glibc's huge pages,
or jemalloc keeping freed pages where it is installed."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medgan_jax import launch

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ("train_gan.py", "train_classifier.py", "evaluate.py")
ALL = ":".join(f"{name}={value}" for name, value in launch.TUNABLES.items())

GLIBC_ONLY = {launch.JEMALLOC_CHOICE: "0"}

_PROBE = """
import ctypes, json, os, resource, sys
from medgan_jax import launch
launch.reexec_with_malloc_tunables()
libc = ctypes.CDLL(None)  # the process's malloc (numpy advises huge pages on its own)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def touch_new_block():
    block = libc.malloc(64 << 20)  # 64 MiB: glibc maps it, advised huge where set
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ctypes.memset(block, 1, 64 << 20)
    return block, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

block, _ = touch_new_block()
with open("/proc/self/smaps_rollup") as f:
    huge_kib = next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages"))
libc.free(block)
_, faults_again = touch_new_block()  # a new block of the size just freed, as XLA's steps do
print(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:], "huge_kib": huge_kib,
                  "tunables": os.environ.get("GLIBC_TUNABLES"),
                  "preload": os.environ.get("LD_PRELOAD"), "jemalloc": hasattr(libc, "mallctl"),
                  "faults_again": faults_again}))
"""


def environment_with_fake_jemalloc(tmp_path, monkeypatch) -> str:
    """launch.jemalloc_dirs() -> [tmp_path], holding an empty JEMALLOC."""
    library = tmp_path / launch.JEMALLOC
    library.write_bytes(b"")
    monkeypatch.setattr(launch, "jemalloc_dirs", lambda: [str(tmp_path)])
    return str(library)


def test_environment_adds_each_tunable_once_and_keeps_the_users(monkeypatch):
    env = lambda **values: {**GLIBC_ONLY, **values}  # noqa: E731
    assert launch.malloc_environment(env(A="1")) == env(A="1", GLIBC_TUNABLES=ALL)
    merged = launch.malloc_environment(env(GLIBC_TUNABLES="glibc.malloc.arena_max=2"))
    assert merged["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{ALL}"
    assert launch.malloc_environment(env(GLIBC_TUNABLES=ALL)) is None
    assert launch.malloc_environment(env(GLIBC_TUNABLES="glibc.malloc.hugetlb=0")) is None
    assert launch.malloc_environment({launch.OPT_OUT: "0"}) is None
    monkeypatch.setattr(launch, "TUNABLES", {"glibc.malloc.hugetlb": "1", "glibc.malloc.x": "2"})
    users = launch.malloc_environment(env(GLIBC_TUNABLES="glibc.malloc.x=3"))
    assert users["GLIBC_TUNABLES"] == "glibc.malloc.x=3:glibc.malloc.hugetlb=1"


def test_jemalloc_is_preloaded_where_found_unless_the_user_chose(tmp_path, monkeypatch):
    library = environment_with_fake_jemalloc(tmp_path, monkeypatch)
    added = launch.malloc_environment({"A": "1"})
    assert added == {
        "A": "1",
        "GLIBC_TUNABLES": ALL,
        "LD_PRELOAD": library,
        "MALLOC_CONF": launch.JEMALLOC_CONF,
    }
    assert launch.malloc_environment(added) is None  # the restarted process: nothing to do
    theirs = launch.malloc_environment({"LD_PRELOAD": "/x/libfoo.so", "MALLOC_CONF": "narenas:1"})
    assert theirs["LD_PRELOAD"] == f"{library}:/x/libfoo.so"
    assert theirs["MALLOC_CONF"] == "narenas:1"
    tcmalloc = {"GLIBC_TUNABLES": ALL, "LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"}
    assert launch.malloc_environment(tcmalloc) is None  # the user's allocator stays
    assert "LD_PRELOAD" not in launch.malloc_environment({launch.JEMALLOC_CHOICE: "0"})
    assert launch.malloc_environment({launch.OPT_OUT: "0"}) is None
    named = tmp_path / "elsewhere.so"
    named.write_bytes(b"")
    chosen = launch.malloc_environment({launch.JEMALLOC_CHOICE: str(named)})
    assert chosen["LD_PRELOAD"] == str(named)
    with pytest.raises(FileNotFoundError, match=f"{launch.JEMALLOC_CHOICE}=/no/such.so"):
        launch.malloc_environment({launch.JEMALLOC_CHOICE: "/no/such.so"})


def test_stock_environment_undoes_what_the_launch_adds(tmp_path, monkeypatch):
    environment_with_fake_jemalloc(tmp_path, monkeypatch)
    users = {"A": "1", "GLIBC_TUNABLES": "glibc.malloc.x=3", "LD_PRELOAD": "/x/libfoo.so"}
    for environ in (users, {"A": "1"}, {**users, "MALLOC_CONF": "narenas:1"}):
        assert launch.stock_environment(launch.malloc_environment(environ)) == environ
    assert "jemalloc" in launch.allocator(launch.malloc_environment(users))
    assert launch.allocator({"GLIBC_TUNABLES": ALL}) == f"glibc (GLIBC_TUNABLES {ALL})"


def _probe(env: dict[str, str]) -> tuple[dict, int]:
    process = subprocess.Popen(
        [sys.executable, "-c", _PROBE, "--flag=1", "x"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), process.pid


def _clean_environment() -> dict[str, str]:
    drop = ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_CONF", launch.OPT_OUT, launch.JEMALLOC_CHOICE)
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_the_restart_keeps_pid_and_arguments_and_gets_huge_pages():
    env = {**_clean_environment(), **GLIBC_ONLY}
    result, pid = _probe(env)
    assert result["pid"] == pid and result["argv"] == ["--flag=1", "x"]
    assert result["tunables"] == ALL and result["preload"] is None and not result["jemalloc"]
    opted_out, _ = _probe({**env, launch.OPT_OUT: "0"})
    assert opted_out["tunables"] is None
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.exists() or "[never]" in mode.read_text():
        pytest.skip("this kernel gives no transparent huge pages")
    assert result["huge_kib"] >= 32 << 10, "the 64 MiB block should be mostly huge pages"
    assert opted_out["huge_kib"] < 8 << 10


def test_with_jemalloc_a_freed_block_is_reused_without_page_faults():
    env = _clean_environment()
    if launch.find_jemalloc(env) is None:
        pytest.skip(f"no {launch.JEMALLOC} installed (apt install libjemalloc2)")
    result, pid = _probe(env)
    assert result["pid"] == pid and result["argv"] == ["--flag=1", "x"]
    assert result["jemalloc"] and launch.JEMALLOC in result["preload"]
    assert result["faults_again"] < 16, result  # 64 MiB afresh: 32 huge or 16,384 small pages
    glibc, _ = _probe({**env, **GLIBC_ONLY})
    assert not glibc["jemalloc"] and glibc["faults_again"] >= 32, glibc


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_entry_points_restart_before_importing_jax(script):
    """The first statement after the docstring is the restart, under __main__ only."""
    body = ast.parse((REPO / script).read_text()).body
    first = body[1]
    assert isinstance(first, ast.If) and "__main__" in ast.unparse(first.test)
    assert "launch.reexec_with_malloc_tunables()" in ast.unparse(first)
