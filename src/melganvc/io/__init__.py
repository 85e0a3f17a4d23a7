"""Files, audio, checkpoints and bundled models: everything that touches the disk."""
