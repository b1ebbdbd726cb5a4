"""Training as a dynamical system: gradient descent as a map, its stability, the edge of stability,
implicit bias, and SGD as a random dynamical system."""

# --- gradient descent, training loop, gradient flow (owned by the GD/training work) ---

# --- SGD as a random dynamical system (owned by the SGD work) ---
