"""Neural network modules: image encoders and caption decoders."""
