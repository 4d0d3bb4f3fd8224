"""Memory tuning: keep freed heap memory for reuse, hand it back once a batch is done.

A producer at a million messages a second allocates and frees megabytes per batch. glibc
returns freed memory at the top of the heap to the OS after every batch, so each new batch
page-faults it back in: about a third of the producer's time in ``bench/topics.py``.
Raising the trim threshold, the top pad and the mmap threshold (what
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` and ``MALLOC_MMAP_THRESHOLD_`` do) keeps
batch-sized buffers on the heap for the next batch; at most two arenas keep them, however
many threads allocate. The same goes for HTTP bodies of megabytes: the platform server and
the client apply it too (uvicorn receives a large upload three times faster). Long-running
bulk work (an exporter) calls :func:`release_free_memory` after each batch, so the process
follows its working set.
Arrow allocates through the same heap (its system memory pool): its own allocators reserve
large arenas that stay resident long after a batch. Nothing changes on other C libraries.

These are settings of the whole process, so only lakeport's own processes make them: the
``lakeport`` command (serve, workers, exporters, the demo, apps it runs) calls
:func:`tune_process` first thing. Importing lakeport, creating a client or opening an engine
changes nothing; a program using lakeport as a library opts in with
``lakeport.tune_process()``. Set ``LAKEPORT_MALLOC_TUNING=0`` to leave the allocators as they
are everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
TRIM_THRESHOLD = 128 << 20
TOP_PAD = 64 << 20
MMAP_THRESHOLD = 32 << 20
ARENA_MAX = 2

_applied = False
_tuned = False  # tune_process() ran: this process opted in
_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if not name:
            return None
        try:
            libc = ctypes.CDLL(name)
            libc.mallopt  # noqa: B018 - glibc only
            libc.malloc_trim  # noqa: B018
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS now (after a batch-sized job is done), so a
    process that keeps freed memory for speed still follows its working set."""
    if _applied and (libc := _glibc()) is not None:
        libc.malloc_trim(0)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (around code without ``await`` only).

    Building tens of thousands of tuples or lists at once (a batch of messages, a column of
    observations) otherwise triggers collections that scan every new object and cost more
    than the work itself; such objects form no cycles and are freed by reference counting.
    The collector's previous state is restored.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def tuning_enabled() -> bool:
    return os.environ.get("LAKEPORT_MALLOC_TUNING", "1") != "0"


def started_as_command() -> bool:
    """Whether this process is the ``lakeport`` command (the console script, or
    ``python -m lakeport.cli``)."""
    argv = getattr(sys, "argv", None) or [""]
    name = os.path.basename(str(argv[0])).lower()
    if name in ("lakeport", "lakeport.exe", "lakeport-script.py"):
        return True
    return ("-m", "lakeport.cli") in itertools.pairwise(getattr(sys, "orig_argv", ()))


def arrow_uses_system_allocator() -> None:
    """Make Arrow allocate from the C heap (unless the user chose a pool with
    ``ARROW_DEFAULT_MEMORY_POOL``); the environment is left as it was.

    Arrow reads ``ARROW_DEFAULT_MEMORY_POOL`` once, when pyarrow is imported: before that the
    variable is set just for that import (a one-shot import hook, so a command that never
    needs pyarrow does not load it); after it pyarrow's default pool is replaced, which
    covers the allocations pyarrow makes for Python calls (not those inside C++ code that
    asks Arrow for its own default).
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    if "pyarrow" in sys.modules:
        import pyarrow

        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
        return
    if not any(isinstance(finder, _ArrowOnSystemHeap) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ArrowOnSystemHeap())


class _ArrowOnSystemHeap(importlib.abc.MetaPathFinder):
    """Imports pyarrow, once, with ``ARROW_DEFAULT_MEMORY_POOL=system`` set for the import."""

    def find_spec(self, name: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name != "pyarrow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
            return spec
        loader = spec.loader
        load = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
            try:
                load(module)
                module.default_memory_pool()
            finally:
                os.environ.pop("ARROW_DEFAULT_MEMORY_POOL", None)
                with contextlib.suppress(AttributeError):
                    del loader.exec_module  # type: ignore[method-assign]

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def tune_process() -> bool:
    """Tune this process's allocators for bulk data (Arrow on the C heap, freed heap memory
    kept for the next batch); return whether the glibc settings are in effect.

    The ``lakeport`` command calls it; a program using lakeport as a library may call it
    once, at start, to get the same throughput (called before pyarrow is imported, Arrow's
    C++ allocations use the C heap too; after, pyarrow's default pool is replaced). Does
    nothing when ``LAKEPORT_MALLOC_TUNING=0``.
    """
    global _tuned
    if not tuning_enabled():
        return False
    if not _tuned:
        _tuned = True
        arrow_uses_system_allocator()
    return keep_freed_memory()


def keep_freed_memory() -> bool:
    """Apply the glibc settings once, in a process that opted in with :func:`tune_process`
    (the ``lakeport`` command does); return whether they are in effect."""
    global _applied
    if _applied:
        return True
    if not _tuned or not tuning_enabled():
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False  # the user chose their own settings
    libc = _glibc()
    if libc is None:
        return False  # not glibc
    mallopt = libc.mallopt
    _applied = all(
        mallopt(option, value)
        for option, value in (
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD),
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_ARENA_MAX, ARENA_MAX),
        )
    )
    return _applied
