"""Subcommands per domain: each module has ``register(verbs)``."""
