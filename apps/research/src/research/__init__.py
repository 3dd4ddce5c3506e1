"""Studies that answer one question each and print a table: one folder per domain and
``cross_domain`` for the engine. Run one as ``uv run python -m research.<domain>.<study>``;
apps/research/README.md lists them with their commands, outputs and last results."""
