"""Benchmarks: run with `make bench` (saves JSON) or `make bench-compare` (fails on regression)."""
