"""kwb: kernel patch-series workbench.

The pipeline, one package per stage: sources → series → tree → build → qemu → workloads → verdict → report.
"""

__version__ = "0.1.0"
