"""Evaluation: workflow.py generates on a test set, metrics.py scores the predictions."""
