"""Audio by spectrogram diffusion, with Griffin-Lim and a neural vocoder.

```python
from diffaudio import AudioPipeline, load_audio, spectrogram_config, train_audio_diffusion
spec = spectrogram_config(8000, 0.75)
clips = load_audio("fsdd/recordings", sample_rate=8000, num_samples=spec.num_samples,
                   pattern="{label}_{speaker}_{index}")
result = train_audio_diffusion(clips, "runs/audio", TrainConfig(steps=4000), spectrogram=spec)
pipe = AudioPipeline.from_pretrained(result.final_model)
spectrograms = pipe.sample(10, labels=torch.arange(10), guidance=3.0)   # (10, 1, M, T)
pipe.save(spectrograms, "samples/")                                      # WAVs + PNGs
```
"""

from diffaudio.data import AudioClips, load_audio
from diffaudio.model import AudioUNet, audio_unet_config
from diffaudio.pipeline import (
    AudioPipeline,
    clip_spectrograms,
    distill_audio_diffusion,
    keep_mask,
    train_audio_diffusion,
    train_vocoder,
)
from diffaudio.spectrogram import SpectrogramConfig, spectrogram_config
from diffaudio.vocoder import Vocoder, VocoderConfig

__all__ = [
    "AudioClips",
    "AudioPipeline",
    "AudioUNet",
    "SpectrogramConfig",
    "Vocoder",
    "VocoderConfig",
    "audio_unet_config",
    "clip_spectrograms",
    "distill_audio_diffusion",
    "keep_mask",
    "load_audio",
    "spectrogram_config",
    "train_audio_diffusion",
    "train_vocoder",
]
