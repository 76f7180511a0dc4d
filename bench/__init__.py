"""Benchmarks of the real pipeline (`make bench`; `--quick` is the smoke run in `make test`)."""
