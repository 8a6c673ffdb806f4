"""Benchmarks of the build and the API: `anime-build bench` (`bench.cli`) and the parts it runs.

No pipeline stage imports this package; benchmarks import stages, never the other way.
"""
