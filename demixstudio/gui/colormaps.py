"""Colour maps for the spectrogram: perceptually uniform lookup tables."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyqtgraph as pg

# Perceptually uniform maps shipped with pyqtgraph (CC0 matplotlib data);
# "inferno" reads well on a dark theme: quiet is near-black, loud near-white.
COLORMAPS = ("inferno", "magma", "viridis", "plasma", "cividis")
DEFAULT_COLORMAP = "inferno"


@lru_cache(maxsize=None)
def lookup_table(name: str = DEFAULT_COLORMAP, n: int = 256) -> np.ndarray:
    """uint8 (n, 3) RGB table of colour map ``name``."""
    if name not in COLORMAPS:
        raise ValueError(f"colour map {name!r} is not one of {', '.join(COLORMAPS)}")
    cmap = pg.colormap.get(name)
    lut = cmap.getLookupTable(0.0, 1.0, n, alpha=False)
    return np.ascontiguousarray(lut[:, :3], dtype=np.uint8)


def hex_rgb(colour: str) -> tuple:
    """'#rrggbb' -> (r, g, b) ints."""
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
