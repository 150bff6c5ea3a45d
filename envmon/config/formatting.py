"""Human formatting of limit values and durations for messages and tables."""

from __future__ import annotations

import math

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60))


def format_number(value: float) -> str:
    """Format a limit value: whole numbers with thousands separators, others compactly."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:g}"


def format_duration(seconds: float) -> str:
    """Format seconds compactly (``90`` → ``1m30s``, ``0`` → ``0s``) for tables and logs."""
    if seconds <= 0:
        return "0s"
    whole = int(seconds)
    fraction = seconds - whole
    parts: list[str] = []
    for unit, size in _UNITS:
        amount, whole = divmod(whole, size)
        if amount:
            parts.append(f"{amount}{unit}")
    rest = whole + fraction
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)
