"""Benchmarks of hasnas-optuna; `python -m benchmarks` runs them all (see README.md)."""
