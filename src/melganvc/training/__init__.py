"""Training: data, losses, one optimisation step, and the loop around it."""
