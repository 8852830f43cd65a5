"""Benchmarks that print JSON figures (ARCHITECTURE.md); see bench/README.md."""
