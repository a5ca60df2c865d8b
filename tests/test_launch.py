"""Entry points restart once with glibc's malloc tunables (launch.py): huge pages."""

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

_PROBE = """
import ctypes, json, os, sys
from medgan_jax import launch
launch.reexec_with_malloc_tunables()
libc = ctypes.CDLL(None)  # glibc's malloc itself (numpy advises huge pages on its own)
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(64 << 20)  # 64 MiB: served by mmap, advised huge where set
ctypes.memset(block, 1, 64 << 20)
with open("/proc/self/smaps_rollup") as f:
    huge_kib = next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages"))
print(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:], "huge_kib": huge_kib,
                  "tunables": os.environ.get("GLIBC_TUNABLES")}))
"""


def test_environment_adds_each_tunable_once_and_keeps_the_users(monkeypatch):
    assert launch.malloc_environment({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": ALL}
    merged = launch.malloc_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert merged["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{ALL}"
    assert launch.malloc_environment({"GLIBC_TUNABLES": ALL}) is None
    assert launch.malloc_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None
    assert launch.malloc_environment({launch.OPT_OUT: "0"}) is None
    monkeypatch.setattr(launch, "TUNABLES", {"glibc.malloc.hugetlb": "1", "glibc.malloc.x": "2"})
    users = launch.malloc_environment({"GLIBC_TUNABLES": "glibc.malloc.x=3"})
    assert users["GLIBC_TUNABLES"] == "glibc.malloc.x=3:glibc.malloc.hugetlb=1"


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


def test_the_restart_keeps_pid_and_arguments_and_gets_huge_pages():
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", launch.OPT_OUT)}
    result, pid = _probe(env)
    assert result["pid"] == pid and result["argv"] == ["--flag=1", "x"]
    assert result["tunables"] == ALL
    opted_out, _ = _probe({**env, launch.OPT_OUT: "0"})
    assert opted_out["tunables"] is None
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.exists() or "[never]" in mode.read_text():
        pytest.skip("this kernel gives no transparent huge pages")
    assert result["huge_kib"] >= 32 << 10, "the 64 MiB block should be mostly huge pages"
    assert opted_out["huge_kib"] < 8 << 10


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_entry_points_restart_before_importing_jax(script):
    """The first statement after the docstring is the restart, under __main__ only."""
    body = ast.parse((REPO / script).read_text()).body
    first = body[1]
    assert isinstance(first, ast.If) and "__main__" in ast.unparse(first.test)
    assert "launch.reexec_with_malloc_tunables()" in ast.unparse(first)
