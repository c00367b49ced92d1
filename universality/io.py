"""Tensor files: atomic safetensors writes, checksummed reads, one error type.

Every file the package writes (shard weights, analysis results, fixed points) goes
through :func:`atomic_save_tensors` and is read back through :func:`load_tensors`, so the
run store and the analysis modules share one I/O layer and neither imports the other.
Loading never unpickles.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_bytes
from safetensors.torch import save_file


class RunError(Exception):
    """A run directory (or one of its files) is missing, foreign or corrupt."""


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    return sha256(Path(path).read_bytes())


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> str:
    """Write a safetensors file atomically (temp file + fsync + rename); return its SHA-256."""
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as fh:
        digest = sha256(fh.read())
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return digest


def load_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file; with ``expected_sha256``, first check the file's checksum.
    A missing, unreadable, torn or altered file raises :class:`RunError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise RunError(f"{path}: cannot read ({err.strerror or err}); the run directory is damaged") from err
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise RunError(f"{path}: checksum mismatch (the file changed after it was written); "
                       "the run directory is damaged")
    try:
        return _load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise RunError(f"{path}: cannot read tensors ({err}); the run directory is corrupt") from err
