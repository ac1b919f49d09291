"""DemixStudio: a layer-based audio editor built on open source-separation methods."""

from demixstudio.omp import prefer_passive_waits

# Before anything imports torch: OpenMP reads its wait policy once, as it starts.
prefer_passive_waits()

__version__ = "0.1.0"
