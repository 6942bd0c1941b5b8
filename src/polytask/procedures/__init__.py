"""Procedures built on whole training runs (self-training: rounds of runs on pseudo-labels)."""
