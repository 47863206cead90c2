"""Readers for calibration images and the embedded demo digits."""

from foadx.data.calibration import CalibrationImages, calibration_images, open_reader

__all__ = ["CalibrationImages", "calibration_images", "open_reader"]
