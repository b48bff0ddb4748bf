"""Generation with safeguards: similarity gate, index, calibration."""
