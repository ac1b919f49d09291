"""DemixStudio: a layer-based audio editor built on open source-separation methods."""

__version__ = "0.1.0"
