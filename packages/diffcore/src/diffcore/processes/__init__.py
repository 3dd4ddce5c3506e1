"""Forward corruption processes and their training losses."""

from diffcore.processes.gaussian import GaussianProcess

__all__ = ["GaussianProcess"]
