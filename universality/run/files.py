"""Files of a run: one atomic write, one checked read, one error type.

Every file the package writes into a run (shard weights, analysis results) goes through
:func:`write_atomic` (temporary name, fsync, rename; returns the SHA-256 of what it wrote)
and is read back through :func:`read_checked` (one read, checksum, then the bytes).
Tensor files are safetensors: :func:`encode` / :func:`decode` turn tensors and string
metadata into bytes and back, never unpickling.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_bytes
from safetensors.torch import save as _save_bytes

from .layout import temporary


class RunError(Exception):
    """A run directory (or one of its files) is missing, foreign or corrupt."""


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    return sha256(Path(path).read_bytes())


def write_atomic(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename; the parent
    directory is created); return its SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return sha256(data)


def read_checked(path: Path, expected_sha256: str | None = None) -> bytes:
    """The bytes of ``path``, checked against ``expected_sha256`` when given; a missing,
    unreadable or altered file raises :class:`RunError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise RunError(f"{path}: cannot read ({err.strerror or err}); the run directory is damaged") from err
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise RunError(f"{path}: checksum mismatch (the file changed after it was written); "
                       "the run directory is damaged")
    return data


def encode(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Safetensors bytes of ``tensors`` (moved to the CPU, made contiguous) with ``metadata``."""
    return bytes(_save_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata))


def decode(data: bytes, path: Path | str = "<bytes>") -> dict[str, torch.Tensor]:
    """The tensors of safetensors ``data``; :class:`RunError` naming ``path`` when torn or foreign."""
    try:
        return _load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise RunError(f"{path}: cannot read tensors ({err}); the run directory is corrupt") from err


def metadata(data: bytes) -> dict[str, str] | None:
    """The string metadata of safetensors ``data`` (its header alone), None when torn or foreign."""
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8: 8 + size])
    except (struct.error, ValueError):
        return None
    return header.get("__metadata__") or {} if isinstance(header, dict) else None


def save_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> str:
    """Write a safetensors file atomically; return its SHA-256."""
    return write_atomic(path, encode(tensors, metadata))


def load_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, checked against ``expected_sha256`` when given."""
    return decode(read_checked(path, expected_sha256), path)


def jsonable(value: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars and arrays (scaffold numbers, claim details) -> JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
