"""Argument checks at the public boundary: one message shape for every function that takes numbers.

A bool is refused although Python counts it as an int: ``sigma=True`` is a slip, never a noise level.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ArgumentError

#: The largest random seed: NumPy's legacy seeding (which keras.utils.set_random_seed calls) takes no more, and
#: jax.random.key keeps a seed's low 32 bits (2**32 would draw seed 0's numbers).
SEED_MAX = 2**32 - 1

_INTS = (int, np.integer)
_NUMBERS = (int, float, np.integer, np.floating)


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int (NumPy integers too) of at least ``minimum`` and at most ``maximum``, else ArgumentError."""
    if (isinstance(value, bool) or not isinstance(value, _INTS) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        bound = f" >= {minimum}" if minimum is not None else ""
        bound += f"{' and' * bool(bound)} <= {maximum:,}" if maximum is not None else ""
        raise ArgumentError(f"{name}={value!r}: pass an integer{bound}")
    return int(value)


def number(name: str, value: Any, minimum: float | None = 0.0, strict: bool = False, hint: str = "") -> float:
    """``value`` as a finite float that is >= ``minimum`` (> with ``strict``), else ArgumentError."""
    ok = not isinstance(value, bool) and isinstance(value, _NUMBERS) and math.isfinite(float(value))
    if ok and minimum is not None:
        ok = float(value) > minimum if strict else float(value) >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ArgumentError(f"{name}={value!r}: pass a finite number{bound}{hint}")
    return float(value)
