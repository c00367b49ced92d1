import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Small tensor ops are far faster single-threaded on this 2-core machine kind.
torch.set_num_threads(1)

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _damage_file(path, how):
    """Truncate the file, flip one byte in its tensor data, or delete it."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        i = len(data) - 3  # inside the tensor data: the file still parses, only the checksum tells
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    else:
        path.unlink()


@pytest.fixture
def damage_file():
    """``damage_file(path, "truncate" | "flip" | "delete")``: a disk failure, in place."""
    return _damage_file
