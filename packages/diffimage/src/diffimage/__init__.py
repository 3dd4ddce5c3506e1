"""Image diffusion: data, conditioning, U-Net presets, train / sample / edit, FID and KID."""
