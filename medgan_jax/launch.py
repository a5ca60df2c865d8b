"""Process start-up that has to come before JAX is imported: glibc's allocator settings.

XLA:CPU allocates a training step's buffers afresh on every execution and frees them at
its end, and glibc serves the large ones with fresh pages from the kernel, one 4 KiB
fault each (DenseNet-121 at batch 32 on 224x224 images: about a million per step). With
glibc's `hugetlb` tunable its allocations are advised to use transparent huge pages, 2 MiB
each: up to 512 times fewer faults (benchmarks/classifier_throughput.py's docstring has
the measured effect, and the tunables tried besides: keeping the memory in the process
with one arena removed the remaining faults but slowed the diffusion sampler by a fifth).
glibc reads its tunables once, when the process starts, so an entry point re-executes
itself (same PID, same arguments) with GLIBC_TUNABLES set; scripts/setup_env.sh exports
them up front. Stdlib only, so that the restart precedes the seconds of importing JAX.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = {"glibc.malloc.hugetlb": "1"}
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
