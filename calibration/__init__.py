"""Calibration of RGB and thermal cameras and IR-to-RGB registration (OpenCV, numpy).

This package is the first stage of the pipeline and works with uint8/BGR images as OpenCV does:
:mod:`calibration.boards` (board specs and detection, with a thermal preprocessing chain),
:mod:`calibration.intrinsics` (camera and stereo calibration with view rejection) and
:mod:`calibration.run` (``rgbt calibrate``), :mod:`calibration.registration` (the IR -> RGB registration object),
:mod:`calibration.align` (automatic refinement, warping, evaluation) and :mod:`calibration.register`
(``rgbt register``).
"""
