"""Benchmarks (never run by the tests). Run each from the repository root
as a module, e.g. `python -m bench.train_bench --size=tiny`; what they
share is `bench/common.py`; the latest figures and their commands are in
`bench/RESULTS.md`."""
