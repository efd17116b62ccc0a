"""kwb: kernel patch-series workbench.

The pipeline, one package per stage: sources → series → kernel → vm → workloads → judge → report, on top of
core; orchestrate sequences them and cli parses commands (tests/test_import_graph.py keeps that order).
"""

__version__ = "0.1.0"
