"""Training: the loop, losses, checkpoints and distributed helpers."""
