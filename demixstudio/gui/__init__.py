"""The editor window (Qt only; everything below gui/ runs without a display)."""
