"""SDNN benchmarks: ``python -m benchmarks [--quick | --smoke]`` (see docs/benchmarks.md)."""
