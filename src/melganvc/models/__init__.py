"""The networks: layers, spectral norm, G / D / S and chunked inference."""
