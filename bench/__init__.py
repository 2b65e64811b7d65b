"""Benchmarks of data2vec against the reference library, side by side: ``python -m bench``."""
