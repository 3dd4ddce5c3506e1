"""Audio by spectrogram diffusion, with Griffin-Lim and a neural vocoder."""
