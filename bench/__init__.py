"""workerledger's benchmark suite: `python -m bench` runs every `bench_*.py` module and
rewrites BENCHMARKS.md from `bench/results/*.json` (see bench/report.py)."""
