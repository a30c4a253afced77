"""Calibration of RGB and thermal cameras and IR-to-RGB registration (OpenCV, numpy).

This package is the first stage of the pipeline and works with uint8/BGR images as OpenCV does:
:mod:`calibration.boards` (board specs and detection, with a thermal preprocessing chain),
:mod:`calibration.intrinsics` (camera and stereo calibration with view rejection) and
:mod:`calibration.run` (``rgbt calibrate``).
"""
