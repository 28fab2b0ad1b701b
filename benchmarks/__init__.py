"""Attacks, metrics, the benchmark runner and leaderboards."""
