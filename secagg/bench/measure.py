"""How ``secagg bench`` measures: repeated timings, one-core pinning, machine facts."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TypeVar

import numpy as np
import tenseal as ts

from secagg import __version__
from secagg._internal.seal_backend import backend_for
from secagg.bench.results import Json
from secagg.params import Parameters

S = TypeVar("S")
R = TypeVar("R")


def timed_with_setup(
    setup: Callable[[], S], run: Callable[[S], R], repeats: int
) -> tuple[list[float], R]:
    """Time ``run(setup())`` ``repeats`` times; setup is untimed. Returns samples, last result."""
    samples: list[float] = []
    result: R | None = None
    for _ in range(repeats):
        result = None  # free the previous repetition's output before the next one
        arg = setup()
        gc.collect()
        start = time.perf_counter()
        result = run(arg)
        samples.append(time.perf_counter() - start)
    assert result is not None
    return samples, result


def timed(run: Callable[[], R], repeats: int) -> tuple[list[float], R]:
    """Time ``run()`` ``repeats`` times. Returns the samples and the last result."""
    return timed_with_setup(lambda: None, lambda _: run(), repeats)


@contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null (TenSEAL prints a warning per long vector)."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@contextmanager
def one_core(pin: bool) -> Iterator[Json]:
    """Pin this thread (and threads it starts) to one CPU and BLAS pools to one thread."""
    info: Json = {"pinned_cpu": None, "tenseal_n_threads": 1, "blas_threads_limited_to_1": False}
    with ExitStack() as stack:
        if pin and hasattr(os, "sched_setaffinity"):
            original = os.sched_getaffinity(0)
            cpu = min(original)
            os.sched_setaffinity(0, {cpu})
            stack.callback(os.sched_setaffinity, 0, original)
            info["pinned_cpu"] = cpu
            info["affinity_before"] = sorted(original)
        try:
            from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
        except ImportError:
            pass
        else:
            if pin:
                stack.enter_context(threadpool_limits(limits=1))
                info["blas_threads_limited_to_1"] = True
        info["how"] = (
            "sched_setaffinity pins the measuring thread to one CPU (threads started later "
            "inherit it); TenSEAL contexts use n_threads=1; SEAL runs single-threaded; "
            "threadpoolctl limits BLAS/OpenMP pools to 1 thread (numpy's elementwise "
            "kernels use none)"
            if pin
            else "not pinned (--no-pin)"
        )
        yield info


def machine_info() -> Json:
    """Platform, CPU model, core counts and library versions of this machine."""
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "tenseal": ts.__version__,
        "secagg": __version__,
        "secagg_seal_glue": (
            "direct memory" if backend_for(Parameters.default()).direct_memory else "files"
        ),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
