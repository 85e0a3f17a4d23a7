"""Signal processing without learned weights: mel features, inversion, loudness, resampling."""
