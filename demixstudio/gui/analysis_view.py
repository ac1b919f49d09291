"""What a spatial method found, drawn for the user: DUET's histogram, ADRess's azimugram.

Both methods pick their sources as peaks of a plane built from the stereo
mixture; seeing that plane tells the user whether a source was missed (a peak
too low for the threshold) or split (two peaks for one voice), and so which
count or threshold to try next. The data is the layer's
``provenance.analysis`` (the method's ``LayerProposal.extra``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from demixstudio.gui.colormaps import lookup_table
from demixstudio.session.layer import Layer

#: The layer menu's entry for each kind of analysis.
MENU_TITLES = {"duet": "Show DUET histogram…", "adress": "Show azimugram…"}
#: Colours of the peaks: every source's, and the one this layer is.
OTHER_PEAKS, THIS_PEAK = "#9aa0a6", "#ffd54f"


def analysis_kind(layer: Layer) -> Optional[str]:
    """"duet", "adress" or None: which plane the layer's method left for it."""
    a = layer.provenance.analysis if layer.provenance is not None else {}
    if {"histogram", "alpha_edges", "delay_edges_samples"} <= a.keys():
        return "duet"
    if {"azimugram", "azimuth_profile", "azimuth_pans"} <= a.keys():
        return "adress"
    return None


class AnalysisDialog(QDialog):
    """A non-modal window with the plane a spatial method separated ``layer`` from."""

    def __init__(self, layer: Layer, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.kind = analysis_kind(layer)
        if self.kind is None:
            raise ValueError(f"layer {layer.name!r} has no DUET or ADRess analysis")
        a = layer.provenance.analysis
        self.setWindowTitle(f"{layer.name} — {'DUET histogram' if self.kind == 'duet' else 'azimugram'}")
        self.graphics = pg.GraphicsLayoutWidget()
        lay = QVBoxLayout(self)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        lay.addWidget(self.graphics, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.resize(640, 520)
        if self.kind == "duet":
            self._duet(a)
        else:
            self._adress(a)

    def _duet(self, a: dict) -> None:
        """Histogram (alpha_bins, delay_bins) over symmetric attenuation × delay."""
        hist = np.asarray(a["histogram"], dtype=np.float32)
        ae = np.asarray(a["alpha_edges"], dtype=np.float64)
        de = np.asarray(a["delay_edges_samples"], dtype=np.float64)
        plot = self.graphics.addPlot(row=0, col=0)
        plot.setLabel("bottom", "relative delay (samples)")
        plot.setLabel("left", "symmetric attenuation α")
        # ImageItem's first axis is x: delays along x, attenuations along y.
        self.image = pg.ImageItem(np.sqrt(hist.T))  # sqrt: small peaks stay visible
        self.image.setLookupTable(lookup_table())
        self.image.setRect(QRectF(de[0], ae[0], de[-1] - de[0], ae[-1] - ae[0]))
        plot.addItem(self.image)
        peaks = a.get("peaks", [])
        xs = [p["delay_samples"] for p in peaks]
        ys = [p["alpha"] for p in peaks]
        plot.addItem(pg.ScatterPlotItem(xs, ys, symbol="o", size=24,
                                        pen=pg.mkPen(OTHER_PEAKS, width=2), brush=None))
        self.this_peak = None
        if "attenuation" in a and "delay_samples" in a:
            g = float(a["attenuation"])
            self.this_peak = (float(a["delay_samples"]), g - 1.0 / g)
            plot.addItem(pg.ScatterPlotItem([self.this_peak[0]], [self.this_peak[1]],
                                            symbol="+", size=18, pen=pg.mkPen(THIS_PEAK, width=3)))
        self.caption.setText(
            f"{len(peaks)} peak{'s' if len(peaks) != 1 else ''} (circles), one per source; "
            f"this layer's is the cross. Delays are trustworthy below "
            f"{a.get('aliasing_limit_hz', float('nan')):.0f} Hz.")

    def _adress(self, a: dict) -> None:
        """Azimugram (bins, 2β + 1) and its smoothed profile over pan."""
        plane = np.asarray(a["azimugram"], dtype=np.float32)
        pans = np.asarray(a["azimuth_pans"], dtype=np.float64)
        profile = np.asarray(a["azimuth_profile"], dtype=np.float64)
        step = pans[1] - pans[0] if pans.size > 1 else 1.0
        top = self.graphics.addPlot(row=0, col=0)
        top.setLabel("left", "frequency bin")
        if plane.shape[0] != pans.size:  # (bins, positions): pans along x
            plane = plane.T
        self.image = pg.ImageItem(np.sqrt(plane))
        self.image.setLookupTable(lookup_table())
        self.image.setRect(QRectF(pans[0] - step / 2, 0, pans[-1] - pans[0] + step,
                                  plane.shape[1]))
        top.addItem(self.image)
        bottom = self.graphics.addPlot(row=1, col=0)
        bottom.setXLink(top)
        bottom.setLabel("bottom", "pan (−1 left … +1 right)")
        bottom.setLabel("left", "null energy")
        bottom.plot(pans, profile, pen=OTHER_PEAKS)
        positions = a.get("positions", [])
        for p in positions:
            dashed = pg.mkPen(OTHER_PEAKS, style=Qt.PenStyle.DashLine)
            bottom.addItem(pg.InfiniteLine(p["pan"], angle=90, pen=dashed))
        self.this_peak = None
        if "pan" in a:
            self.this_peak = (float(a["pan"]), 0.0)
            for plot in (top, bottom):
                plot.addItem(pg.InfiniteLine(self.this_peak[0], angle=90,
                                             pen=pg.mkPen(THIS_PEAK, width=2)))
        self.caption.setText(
            f"{len(positions)} source{'s' if len(positions) != 1 else ''} (dashed lines) at the "
            f"peaks of the profile; this layer's pan is the yellow line.")
