"""Studies of the domain-free engine (diffcore): samplers on an exact denoiser, kernels and the
sampling loop."""
