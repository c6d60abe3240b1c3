"""Sizes for people, in one unit system everywhere (binary: KiB, MiB, GiB), so a size in a
finding, the table, the fix plan and an error message can be compared at a glance."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``; below 1 KiB the exact count (``512 B``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def count(n: int, noun: str) -> str:
    """``count(1, "tensor")`` -> ``1 tensor``; ``count(2_048, "tensor")`` -> ``2,048 tensors``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
