"""Classifier training: state, jit steps, synthetic-image mixing, early stopping."""
