"""Functional kernels (no Keras state): each with a reference and per-runtime fast variants."""
