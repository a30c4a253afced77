"""Calibration of RGB and thermal cameras and IR-to-RGB registration (OpenCV, numpy).

This package is the first stage of the pipeline; it works with uint8/BGR images as OpenCV does and writes
aligned ``ir/`` + ``vi/`` pairs that :mod:`fusion` reads.
"""
