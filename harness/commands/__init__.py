"""CLI command groups, one module each; each exposes ``register(subparsers)``."""
