"""benchmarks/side_by_side.py: a benchmark side in a worker process, driven over a pipe."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import side_by_side  # noqa: E402

WORKER = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from benchmarks import side_by_side
calls = []
def setup():
    print("a stray line on stdout")  # must not reach the protocol
    handlers = {{"time": side_by_side.timed(lambda: calls.append(1))}}
    handlers["calls"] = lambda: {{"n": len(calls)}}
    return {{"side": sys.argv[1]}}, handlers
side_by_side.serve(setup)
"""


def test_workers_answer_in_turn_and_keep_stray_output_off_the_pipe(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = {name: side_by_side.Worker(str(script), [name]) for name in ("a", "b")}
    assert [w.info for w in workers.values()] == [{"side": "a"}, {"side": "b"}]
    replies = side_by_side.alternate(workers, "time", steps=3, rounds=2)
    assert [len(r) for r in replies.values()] == [2, 2]
    assert all(r["wall"] >= 0 and r["cpu"] >= 0 for rs in replies.values() for r in rs)
    # each round: one untimed step, then the 3 timed ones
    assert workers["a"].request("calls") == {"n": 8}
    for worker in workers.values():
        worker.close()
        assert worker.process.returncode == 0


def test_pytorch_side_gets_glibc_defaults(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1")
    stock = side_by_side.stock_malloc_environment()
    assert stock["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0"
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    assert "GLIBC_TUNABLES" not in side_by_side.stock_malloc_environment()


STEP_WORKER = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from benchmarks import side_by_side
side = sys.argv[sys.argv.index("--worker") + 1]
info = {{"version": "test", "threads": 1}} if side == "torch" else {{}}
side_by_side.serve_step(lambda: (lambda: sum(range(1000)), info))
"""


def test_compare_workers_times_both_sides_and_prints_the_ratio(tmp_path, capsys):
    script = tmp_path / "step_worker.py"
    script.write_text(STEP_WORKER)
    rates, ratio, torch_info = side_by_side.compare_workers(str(script), [], 2, 2, batch=8)
    assert set(rates) == {"medgan_jax", "pytorch"} and all(r > 0 for r in rates.values())
    assert ratio == rates["medgan_jax"] / rates["pytorch"]
    assert torch_info == {"version": "test", "threads": 1}
    assert "ratio medgan_jax / pytorch" in capsys.readouterr().out


RELEASE_PROBE = f"""
import ctypes, json, os, sys
sys.path.insert(0, {str(ROOT)!r})
from benchmarks import side_by_side
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
block = libc.malloc(256 << 20)
ctypes.memset(block, 1, 256 << 20)
libc.free(block)
kept = rss()
side_by_side.release_idle_memory()
print(json.dumps({{"kept": kept, "after": rss(), "jemalloc": hasattr(libc, "mallctl")}}))
"""


def test_release_hands_back_what_jemalloc_keeps():
    from medgan_jax import launch

    environ = launch.stock_environment(dict(os.environ))
    if launch.find_jemalloc(environ) is None:
        pytest.skip(f"no {launch.JEMALLOC} installed (apt install libjemalloc2)")
    for env in (launch.malloc_environment(environ), environ):  # jemalloc, then glibc
        out = subprocess.run(
            [sys.executable, "-c", RELEASE_PROBE], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        if probe["jemalloc"]:  # the freed 256 MiB stayed in the process until released
            assert probe["kept"] - probe["after"] >= 200 << 20, probe
        else:  # glibc gave the block back at free(): nothing left to release
            assert abs(probe["kept"] - probe["after"]) < 32 << 20, probe


def test_timed_steps_on_untimed_until_the_handed_back_memory_is_held_again(monkeypatch):
    """After its round a side hands memory back (here: 1 GiB); in the next round untimed
    steps follow the warm-up one until the process holds that memory again."""
    gib = 1 << 30
    resident = [4 * gib]
    calls = []
    monkeypatch.setattr(side_by_side, "resident_bytes", lambda: resident[0])
    monkeypatch.setattr(
        side_by_side, "release_idle_memory", lambda: resident.__setitem__(0, 3 * gib)
    )

    def refilling_step(per_call):  # each call faults `per_call` of the region back in
        calls.append(1)
        resident[0] = min(4 * gib, resident[0] + per_call)

    for per_call, settle, expected in ((gib, True, [0, 0]), (gib // 4, True, [0, 2]),
                                       (gib // 100, True, [0, side_by_side.SETTLE_STEPS]),
                                       (gib // 4, False, [0, 0])):  # fmt: skip
        resident[0] = 4 * gib
        handler = side_by_side.timed(lambda n=per_call: refilling_step(n), settle=settle)
        replies = [handler(steps=2) for _ in range(2)]  # the first round follows no hand-back
        assert [r["settle_steps"] for r in replies] == expected, per_call
    calls.clear()  # a side told not to warm up (a long sampler call) is not settled either
    handler = side_by_side.timed(lambda: refilling_step(gib // 100), warm=0, settle=True)
    assert [handler(steps=1)["settle_steps"] for _ in range(2)] == [0, 0] and len(calls) == 2
