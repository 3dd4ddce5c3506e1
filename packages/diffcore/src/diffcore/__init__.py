"""The domain-free diffusion engine."""
