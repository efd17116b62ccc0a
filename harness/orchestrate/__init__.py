"""Whole runs on top of the stages: test-series, CI plan/shard/watch, concern repro, coverage, reuse."""
