"""lrbench: which optimizer and learning rate will train this model, and how fast."""

from __future__ import annotations

__version__ = "0.1.0"
