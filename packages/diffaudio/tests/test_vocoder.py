"""The neural vocoder: shapes, the spectral distances, and a short overfit."""

import math

import pytest
import torch

from diffaudio.data import AudioClips
from diffaudio.pipeline import AudioPipeline, train_vocoder
from diffaudio.spectrogram import LogMel, SpectrogramConfig
from diffaudio.vocoder import (
    Vocoder,
    VocoderConfig,
    default_resolutions,
    mel_l1_db,
    multi_resolution_stft_distance,
)
from diffcore.io import from_pretrained
from diffcore.training import TrainConfig

SPEC = SpectrogramConfig(frames=24)
SMALL = VocoderConfig(SPEC, dim=32, intermediate=64, layers=2)


def vowels(n: int) -> torch.Tensor:
    """Harmonic tones with a decaying envelope (speech-like spectra), (n, L)."""
    t = torch.arange(SPEC.num_samples) / SPEC.sample_rate
    g = torch.Generator().manual_seed(0)
    waves = []
    for i in range(n):
        f0 = 120 + 40 * i
        harmonics = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 8))
        noise = 0.01 * torch.randn(t.shape, generator=g)
        waves.append(0.2 * harmonics * torch.exp(-3 * t) + noise)
    return torch.stack(waves)


def test_the_vocoder_maps_frames_to_samples_for_any_width():
    vocoder = Vocoder(SMALL)
    for frames in (24, 9):
        wave = vocoder(torch.rand(2, SPEC.n_mels, frames) * 2 - 1)
        assert wave.shape == (2, SPEC.hop_length * (frames - 1))
        assert torch.isfinite(wave).all()
    with pytest.raises(ValueError, match="expects"):
        vocoder(torch.rand(2, SPEC.n_mels + 1, 24))


def test_spectral_distances_are_zero_for_identical_audio_and_grow_with_difference():
    waves = vowels(2)
    logmel = LogMel(SPEC)
    res = default_resolutions(SPEC)
    assert multi_resolution_stft_distance(waves, waves, res) == 0
    assert mel_l1_db(waves, waves, logmel) == 0
    near, far = waves + 0.001 * torch.randn_like(waves), waves.flip(0)
    assert (
        0
        < multi_resolution_stft_distance(near, waves, res)
        < multi_resolution_stft_distance(far, waves, res)
    )
    assert 0 < mel_l1_db(near, waves, logmel) < mel_l1_db(far, waves, logmel)


def test_a_short_overfit_makes_the_vocoder_beat_its_starting_point(tmp_path):
    clips = AudioClips(vowels(4), SPEC.sample_rate)
    config = TrainConfig(steps=60, batch_size=4, lr=3e-3, ema_decay=None, log_every=10)
    result = train_vocoder(clips, tmp_path, config, config=SMALL, progress=False)
    assert result.log[-1].loss < 0.7 * result.log[0].loss, [r.loss for r in result.log]
    vocoder = from_pretrained(Vocoder, result.final_model)
    assert vocoder.config == SMALL
    logmel, res = LogMel(SPEC), default_resolutions(SPEC)
    with torch.no_grad():
        trained = vocoder(logmel(clips.waves))
        fresh = Vocoder(SMALL)(logmel(clips.waves))
    assert multi_resolution_stft_distance(
        trained, clips.waves, res
    ) < multi_resolution_stft_distance(fresh, clips.waves, res)


def test_a_pipeline_refuses_a_vocoder_made_for_other_spectrograms():
    from diffaudio.model import AudioUNet, audio_unet_config

    model = AudioUNet(audio_unet_config("tiny", SpectrogramConfig()))
    with pytest.raises(ValueError, match="different spectrogram settings"):
        AudioPipeline(model, vocoder=Vocoder(SMALL))
