"""Process start-up that has to come before JAX is imported: glibc's allocator settings.

XLA:CPU allocates a training step's buffers afresh on every execution, and glibc serves
the large ones with fresh pages from the kernel, one 4 KiB fault each (DenseNet-121 at
batch 32 on 224x224 images: about a million per step). With glibc's `hugetlb` tunable its
allocations are advised to use transparent huge pages, 2 MiB each: up to 512 times fewer
faults (benchmarks/classifier_throughput.py's docstring has the measured effect). glibc reads
its tunables once, when the process starts, so an entry point re-executes itself (same
PID, same arguments) with GLIBC_TUNABLES set; scripts/setup_env.sh exports it up front.
Stdlib only, so that the restart precedes the seconds of importing JAX.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "MEDGAN_JAX_HUGE_PAGES"  # "0": leave glibc's settings as they are


def huge_pages_environment(environ: dict[str, str]) -> dict[str, str] | None:
    """`environ` with glibc's malloc told to use transparent huge pages, or None where
    nothing is to change: already set (by the user too, to any value), opted out, or not
    Linux with glibc."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    if environ.get(OPT_OUT) == "0" or TUNABLE in tunables:
        return None
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, f"{TUNABLE}=1"]))}


def reexec_with_huge_pages() -> None:
    """Restarts this process with `huge_pages_environment` where it changes anything."""
    environ = huge_pages_environment(dict(os.environ))
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
