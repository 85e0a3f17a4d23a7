"""Pretrained listeners (speaker encoder, recognisers, naturalness) shared by
training logs and evaluation; they never train."""
