"""Process start-up that has to come before JAX is imported: glibc's allocator settings.

XLA:CPU allocates a training step's buffers afresh on every execution and frees them at
its end. With glibc's defaults the large ones are mapped from the kernel and unmapped
again every step, so each step faults its whole working set in anew, one 4 KiB page
at a time (DenseNet-121 at batch 32 on 224x224 images: about a million faults per step),
and on a VM whose freed memory goes back to the host the host backs it again too (seconds
of kernel time per ResNet-50 step after another process ran). These tunables keep the
memory in the process instead, on transparent huge pages:

  hugetlb=1         allocations advised to use 2 MiB transparent huge pages
  arena_max=1       one heap for every thread (other arenas' heaps are unmapped when empty)
  mmap_max=0        large blocks from that heap, not mapped and unmapped one by one
  trim_threshold    the heap's free top kept, not handed back after each step

so that after the first steps a step touches no fresh page (benchmarks/
classifier_throughput.py's docstring has the measured effect). glibc reads its tunables
once, when the process starts, so an entry point re-executes itself (same PID, same
arguments) with GLIBC_TUNABLES set; scripts/setup_env.sh exports them up front. Stdlib
only, so that the restart precedes the seconds of importing JAX.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = {
    "glibc.malloc.hugetlb": "1",
    "glibc.malloc.arena_max": "1",
    "glibc.malloc.mmap_max": "0",
    "glibc.malloc.trim_threshold": str(1 << 40),
}
OPT_OUT = "MEDGAN_JAX_HUGE_PAGES"  # "0": leave glibc's settings as they are


def malloc_environment(environ: dict[str, str]) -> dict[str, str] | None:
    """`environ` with TUNABLES added to GLIBC_TUNABLES, each unless it is already there
    (a user's value is kept), or None where nothing is to change: all present, opted out,
    or not Linux with glibc."""
    if environ.get(OPT_OUT) == "0":
        return None
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    tunables = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    present = {t.split("=", 1)[0] for t in tunables}
    missing = [f"{name}={value}" for name, value in TUNABLES.items() if name not in present]
    if not missing:
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(tunables + missing)}


def reexec_with_malloc_tunables() -> None:
    """Restarts this process with `malloc_environment` where it changes anything."""
    environ = malloc_environment(dict(os.environ))
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)


if __name__ == "__main__":  # scripts/setup_env.sh: print the GLIBC_TUNABLES to export
    print((malloc_environment(dict(os.environ)) or os.environ).get("GLIBC_TUNABLES", ""))
