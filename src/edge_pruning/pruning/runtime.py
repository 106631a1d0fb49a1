"""The process-wide settings of a run, in one place: its log handlers, denormal
flushing, the allocator and the intra-op thread count. `run_settings` applies them
for the duration of a run and restores what can be restored."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import TrainingArguments

# The loggers a run writes to its log file; its progress also goes to the console.
RUN_LOGGERS = ("edge_pruning", "transformers")
# torch has no getter for the flag: the state `flush_denormals_in_all_threads` last set.
_denormals_flushed = False


@contextlib.contextmanager
def run_settings(
    output_dir: Path, log_file: str, targs: TrainingArguments, threads_on_cpu: int | None = None
) -> Iterator[None]:
    """Inside the block: log to `output_dir/log_file` and the console; on the CPU,
    denormals flushed in every intra-op thread, freed memory kept, and (if given)
    `threads_on_cpu` intra-op threads. On leaving, the handlers are closed and the
    log levels, the denormal flag and the thread count are put back (the allocator's
    settings stay: see `reuse_freed_memory`).

    Denormals: early in pruning the circuit equals the full model, the KL is ~1e-4 and
    its gradients are tiny, and x86 arithmetic on denormals is many times slower (a
    SmolLM2 step took 13 s instead of under 2). The device is read only once logging
    is in place, so that what setting it up logs reaches the file."""
    handlers, levels = _add_log_handlers(output_dir, log_file)
    threads, flushed = torch.get_num_threads(), _denormals_flushed
    try:
        if targs.device.type == "cpu":
            flush_denormals_in_all_threads()
            reuse_freed_memory()
            if threads_on_cpu is not None:
                torch.set_num_threads(threads_on_cpu)
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if _denormals_flushed != flushed:
            flush_denormals_in_all_threads(flushed)
        for name, level in levels.items():
            log = logging.getLogger(name)
            log.setLevel(level)
            for handler in handlers:
                log.removeHandler(handler)
        for handler in handlers:
            handler.close()


def _add_log_handlers(output_dir: Path, filename: str) -> tuple[list[logging.Handler], dict[str, int]]:
    """A file handler on every run logger and a console handler on ours; returns them
    and the loggers' levels before."""
    output_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(output_dir / filename)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    levels = {name: logging.getLogger(name).level for name in RUN_LOGGERS}
    for name in RUN_LOGGERS:
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    logging.getLogger(RUN_LOGGERS[0]).addHandler(console)
    return [handler, console], levels


def flush_denormals_in_all_threads(enabled: bool = True) -> bool:
    """`torch.set_flush_denormal(enabled)` in the calling thread and in every OpenMP
    intra-op worker. The flag (FTZ/DAZ in MXCSR) is per thread: a worker thread
    inherits it only if created after it was set, so once the pool exists (any earlier
    parallel op in the process) the workers would compute their share of each
    kernel with denormals while the main thread flushes them, and results would
    depend on what the process ran before. Here every thread of the pool runs the
    call itself, in one parallel region of torch's own libgomp. Returns whether the
    flag is known to be set in every worker (False if no libgomp is found: then
    torch's threads are not OpenMP's, and only the calling thread is set)."""
    global _denormals_flushed
    torch.set_flush_denormal(enabled)
    _denormals_flushed = enabled
    n = torch.get_num_threads()
    if n <= 1:
        return True
    gomp = _torch_libgomp()
    if gomp is None:
        return False
    body_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    def body(_):
        torch.set_flush_denormal(enabled)

    callback = body_type(body)
    gomp.GOMP_parallel.argtypes = [body_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp.GOMP_parallel.restype = None
    gomp.GOMP_parallel(callback, None, n, 0)
    return True


def _torch_libgomp():
    """The OpenMP runtime torch's intra-op threads come from, if it is already loaded in
    this process (libgomp, or libiomp's GOMP-compatible entry points), else None: never
    a second runtime with a pool of its own."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    loaded = sorted({line.split()[-1] for line in maps if "/lib" in line and ("libgomp" in line or "libiomp" in line)})
    for path in loaded:
        try:
            lib = ctypes.CDLL(path)
            lib.GOMP_parallel  # noqa: B018 - the entry point must exist
            return lib
        except (OSError, AttributeError):
            continue
    return None


def reuse_freed_memory() -> None:
    """On glibc, serve large CPU tensors from the heap and keep freed memory.

    By default each allocation over 32 MiB is a fresh mmap that the kernel zero-fills
    page by page, every step: at GPT-2 small, batch 32, that was 13 of a 27 s masked
    forward+backward (bench/RESULTS.md; with it, 22.9 s instead of 26.8-34 s per step
    there). Keeping the memory makes the process hold its peak. The setting stays for
    the process: glibc cannot report the values it replaces, and fixing the trim
    threshold ends its dynamic mmap threshold for good. No-op elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    mallopt(M_TOP_PAD, 2**30)
