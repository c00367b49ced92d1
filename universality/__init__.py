"""universality: populations of RNNs, their geometry and their computational scaffold."""

from __future__ import annotations

__version__ = "0.1.0"
