"""Shared helpers for the asv suite: device selection, thread settings, a GEMM roofline."""

from __future__ import annotations

import os
import time
from typing import TypeVar

import torch

T = TypeVar("T")

#: ``UNIVERSALITY_BENCH_CI=1`` (set by tox's bench env) shrinks every grid to its small
#: end so the CI smoke pass stays within minutes; real measurements run the full grids.
CI = os.environ.get("UNIVERSALITY_BENCH_CI") == "1"


def grid(full: list[T], ci: list[T]) -> list[T]:
    """Parameter values: ``full`` normally, ``ci`` under UNIVERSALITY_BENCH_CI=1."""
    return ci if CI else full

#: Every benchmark runs single-threaded and records it (docs/performance.md, "Threads").
THREADS = 1


def setup_device(device: str) -> torch.device:
    """Set the thread count and return ``device``; raise NotImplementedError (asv: skip)
    when it is absent."""
    torch.set_num_threads(THREADS)
    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA device")
    return torch.device(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_flops_per_second(device: torch.device, n: int = 1024, repeats: int = 5) -> float:
    """Achieved float32 FLOP/s of an ``n x n x n`` GEMM on ``device`` (best of ``repeats``)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
