"""Process start-up that has to come before JAX is imported: the memory allocator's settings.

XLA:CPU allocates a training step's buffers afresh on every execution and frees them at
its end, and glibc serves the large ones with fresh pages from the kernel, one 4 KiB
fault each (DenseNet-121 at batch 32 on 224x224 images: about a million per step). With
glibc's `hugetlb` tunable its allocations are advised to use transparent huge pages, 2 MiB
each: up to 512 times fewer faults. glibc still hands those buffers back to the kernel at
every step's end, and on a VM that returns freed memory to its host (as this project's
do) the next step's pages are backed again on first touch: ResNet-50's step at batch 32
took 6.6 s there against 5.4 s when the memory stays in the process. Where jemalloc is
installed (`apt install libjemalloc2`, `conda install jemalloc`), the entry points
therefore preload it, set to keep freed pages for reuse (the process holds its peak
memory until it exits, as PyTorch's GPU allocator does); glibc's own way to keep them
(one arena) slowed the diffusion sampler by a fifth. benchmarks/classifier_throughput.py's
docstring has the measurements.

The allocator is chosen once, when the process starts, so an entry point re-executes
itself (same PID, same arguments) with the environment set; scripts/setup_env.sh exports
the glibc tunables up front. A value the user set is kept. MEDGAN_JAX_HUGE_PAGES=0 leaves
the allocator as it is; MEDGAN_JAX_JEMALLOC=0 keeps glibc (with its tunables), and
MEDGAN_JAX_JEMALLOC=/path/to/libjemalloc.so.2 names the library to preload. Stdlib only,
so that the restart precedes the seconds of importing JAX.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = {"glibc.malloc.hugetlb": "1"}
OPT_OUT = "MEDGAN_JAX_HUGE_PAGES"  # "0": leave the allocator as it is
JEMALLOC_CHOICE = "MEDGAN_JAX_JEMALLOC"  # "0": glibc; a path: that library
JEMALLOC = "libjemalloc.so.2"
# Freed pages are kept for reuse (never purged: decay -1; jemalloc's own arena for large
# allocations purges eagerly only where the default decay is positive). That one arena
# serves every thread's large buffers: with oversize_threshold:0 they came from per-thread
# arenas, and a buffer freed in one could not serve the next step's allocation from
# another thread: the diffusion step's process grew by 100-200 MB and 5-30 thousand page
# faults every step. Not `thp:always`: tracing ran slower with it.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def _entries(environ: dict[str, str], name: str) -> list[str]:
    """The non-empty entries of a colon-separated variable (GLIBC_TUNABLES, LD_PRELOAD)."""
    return [entry for entry in environ.get(name, "").split(":") if entry]


def _is_allocator(path: str) -> bool:
    """Whether a preloaded library is a malloc (jemalloc, tcmalloc, mimalloc)."""
    return "malloc" in os.path.basename(path)


def jemalloc_dirs() -> list[str]:
    """Where Debian/Ubuntu, Fedora, /usr/local and conda put the library."""
    prefixes = [p for p in (sys.prefix, os.environ.get("CONDA_PREFIX")) if p]
    system = [f"/usr/lib/{platform.machine()}-linux-gnu", "/usr/lib64", "/usr/lib"]
    return [*system, "/usr/local/lib", *(os.path.join(p, "lib") for p in prefixes)]


def find_jemalloc(environ: dict[str, str]) -> str | None:
    """The jemalloc library to preload: MEDGAN_JAX_JEMALLOC's path, else the first
    JEMALLOC in jemalloc_dirs(); None where there is none or MEDGAN_JAX_JEMALLOC=0."""
    choice = environ.get(JEMALLOC_CHOICE, "")
    if choice == "0":
        return None
    if choice:
        if not os.path.isfile(choice):
            raise FileNotFoundError(
                f"{JEMALLOC_CHOICE}={choice}: no such file; expected the path of "
                f"{JEMALLOC}, or 0 to keep glibc's malloc."
            )
        return choice
    paths = (os.path.join(d, JEMALLOC) for d in jemalloc_dirs())
    return next((p for p in paths if os.path.isfile(p)), None)


def malloc_environment(environ: dict[str, str]) -> dict[str, str] | None:
    """`environ` with TUNABLES added to GLIBC_TUNABLES, each unless it is already there,
    and with jemalloc preloaded where `find_jemalloc` finds it (MALLOC_CONF set to
    JEMALLOC_CONF unless the user set one); None where nothing is to change: all present,
    opted out, or not Linux with glibc."""
    if environ.get(OPT_OUT) == "0":
        return None
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    changed = dict(environ)
    tunables = _entries(environ, "GLIBC_TUNABLES")
    present = {t.split("=", 1)[0] for t in tunables}
    missing = [f"{name}={value}" for name, value in TUNABLES.items() if name not in present]
    if missing:
        changed["GLIBC_TUNABLES"] = ":".join(tunables + missing)
    preloaded = _entries(environ, "LD_PRELOAD")
    jemalloc = find_jemalloc(environ)
    if jemalloc and not any(map(_is_allocator, preloaded)):  # else the user's stays
        changed["LD_PRELOAD"] = ":".join([jemalloc, *preloaded])
        changed.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return changed if changed != environ else None


def stock_environment(environ: dict[str, str]) -> dict[str, str]:
    """`environ` without this project's allocator settings (the huge-page tunable, a
    preloaded jemalloc, JEMALLOC_CONF): what a program outside this project runs with
    (the benchmarks' PyTorch side)."""
    stock = {k: v for k, v in environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    tunables = [t for t in _entries(environ, "GLIBC_TUNABLES") if t.split("=")[0] not in TUNABLES]
    if tunables:
        stock["GLIBC_TUNABLES"] = ":".join(tunables)
    preloaded = _entries(environ, "LD_PRELOAD")
    preloaded = [p for p in preloaded if not os.path.basename(p).startswith("libjemalloc")]
    if preloaded:
        stock["LD_PRELOAD"] = ":".join(preloaded)
    if stock.get("MALLOC_CONF") == JEMALLOC_CONF:
        del stock["MALLOC_CONF"]
    return stock


def allocator(environ: dict[str, str]) -> str:
    """The allocator `environ` gives a process, in words (the benchmarks print it)."""
    preloaded = [p for p in _entries(environ, "LD_PRELOAD") if _is_allocator(p)]
    if preloaded:
        return f"{preloaded[0]} (MALLOC_CONF {environ.get('MALLOC_CONF') or 'unset'})"
    return f"glibc (GLIBC_TUNABLES {environ.get('GLIBC_TUNABLES') or 'unset'})"


def reexec_with_malloc_tunables() -> None:
    """Restarts this process with `malloc_environment` where it changes anything."""
    environ = malloc_environment(dict(os.environ))
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)


if __name__ == "__main__":  # scripts/setup_env.sh: print the GLIBC_TUNABLES to export
    print((malloc_environment(dict(os.environ)) or os.environ).get("GLIBC_TUNABLES", ""))
