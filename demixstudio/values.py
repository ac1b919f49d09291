"""Whole numbers from users, files and scripts: one rule for every front end.

A count, a size or a sample rate may arrive as an int, a NumPy integer, or a
float read from JSON or typed in a form. A float counts when it is finite and
has no fraction (3.0 is 3); 2.5 is refused rather than truncated, and a bool
is never a number (True is not a count).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np


def whole(value: Any) -> Optional[int]:
    """``value`` as an int if it is a whole number, else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None
