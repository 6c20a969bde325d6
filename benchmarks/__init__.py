"""Benchmark scripts, ``python -m benchmarks.NAME``; BENCHMARKS.md gives each command and its results."""
