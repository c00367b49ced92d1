"""asv's install step: install the benchmarked wheel with the right torch build.

On a machine without an NVIDIA GPU, pip is constrained by ``constraints/cpu.txt`` (the
CPU wheel; an unpinned torch would pull the multi-GB CUDA build); where ``nvidia-smi``
lists a GPU, torch comes unpinned, i.e. the CUDA build. ``UNIVERSALITY_TORCH=cpu|cuda``
overrides the detection.

Usage (asv.conf.json): ``python {conf_dir}/install_env.py {wheel_file}``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CPU_CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints" / "cpu.txt"


def has_gpu() -> bool:
    """Whether ``nvidia-smi -L`` lists at least one GPU."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def install_command(wheel: str, flavour: str) -> list[str]:
    """The pip command for ``wheel`` with torch of ``flavour`` (``cpu`` or ``cuda``)."""
    cmd = [sys.executable, "-m", "pip", "install", wheel]
    return cmd + ["-c", str(CPU_CONSTRAINTS)] if flavour == "cpu" else cmd


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: install_env.py WHEEL", file=sys.stderr)
        return 2
    flavour = os.environ.get("UNIVERSALITY_TORCH") or ("cuda" if has_gpu() else "cpu")
    if flavour not in ("cpu", "cuda"):
        print(f"UNIVERSALITY_TORCH must be 'cpu' or 'cuda', got {flavour!r}", file=sys.stderr)
        return 2
    print(f"installing {sys.argv[1]} with the {flavour} build of torch", file=sys.stderr)
    return subprocess.call(install_command(sys.argv[1], flavour))


if __name__ == "__main__":
    sys.exit(main())
