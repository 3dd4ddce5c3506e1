"""The `diffuse` command."""
