"""Kernel trees: providers, apply, variants, kconfig, build (produces a KernelBuild)."""
