"""The benchmarks behind `make bench` (`python -m bench`): each prints what it measured
against a baseline run on the same machine in the same run; see the README's Benchmark
section."""
