"""Dataset readers, media loading, feature stores and data loaders."""
