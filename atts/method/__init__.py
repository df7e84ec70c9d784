"""The method: conformal calibration and the decoding policies."""
