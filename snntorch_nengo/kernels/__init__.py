"""Fused multi-step neuron + lowpass kernels (see `reference` for semantics)."""
