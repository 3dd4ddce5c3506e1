"""Spectrogram settings, the normalization and its inverse, Griffin-Lim and spectrogram PNGs."""

import math

import pytest
import torch

from diffaudio.spectrogram import (
    LogMel,
    SpectrogramConfig,
    denormalize,
    griffin_lim,
    load_spectrogram_png,
    normalize,
    save_spectrogram_png,
    spectrogram_config,
)

SPEC = SpectrogramConfig()


def tone(freq: float, config: SpectrogramConfig = SPEC, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(config.num_samples) / config.sample_rate
    return amplitude * torch.sin(2 * math.pi * freq * t)


def noisy_tone(freq: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return tone(freq) + 0.02 * torch.randn(SPEC.num_samples, generator=g)


def test_mel_normalize_and_inverse_round_trip_exactly_inside_the_db_range():
    mel = LogMel(SPEC).power(noisy_tone(440.0)[None])
    mel[..., :3] = 0.0  # some digital silence, below the range
    inside = (mel > 10 ** (SPEC.db_min / 10)) & (mel < 10 ** (SPEC.db_max / 10))
    assert inside.float().mean() > 0.5  # the test exercises real values
    x = normalize(mel, SPEC)
    assert x.min() >= -1 and x.max() <= 1
    back = denormalize(x, SPEC)
    torch.testing.assert_close(back[inside], mel[inside], rtol=1e-4, atol=0.0)
    # quieter than db_min comes back as db_min; normalized values survive a second round trip
    assert torch.allclose(back[mel < 10 ** (SPEC.db_min / 10)], torch.tensor(1e-8))
    torch.testing.assert_close(normalize(denormalize(x, SPEC), SPEC), x, atol=1e-5, rtol=0)


def test_a_clip_of_num_samples_gives_exactly_frames_columns():
    x = LogMel(SPEC)(torch.zeros(3, SPEC.num_samples))
    assert x.shape == (3, SPEC.n_mels, SPEC.frames)
    assert torch.all(x == -1.0)  # digital silence is the floor


def test_louder_sound_is_brighter_and_pitch_moves_the_peak_band():
    logmel = LogMel(SPEC)
    low, high = logmel(tone(300.0)), logmel(tone(2000.0))
    assert low.mean(1).argmax() < high.mean(1).argmax()
    assert logmel(tone(300.0, amplitude=0.05)).mean() < low.mean()


def test_defaults_follow_the_sample_rate():
    assert spectrogram_config(8000) == SPEC
    wide = spectrogram_config(22050, seconds=1.0)
    assert (wide.n_fft, wide.hop_length, wide.n_mels) == (1024, 256, 80)
    assert wide.frames % 4 == 0 and wide.seconds >= 1.0
    odd = spectrogram_config(11025)  # not in the table: the nearest row's durations
    assert odd.n_fft == 512 and odd.hop_length == 128
    with pytest.raises(ValueError, match="hop_length"):
        SpectrogramConfig(n_fft=256, hop_length=512)
    with pytest.raises(ValueError, match="f_max"):
        SpectrogramConfig(f_max=6000.0)


def test_griffin_lim_turns_a_spectrogram_into_a_clip_with_the_same_spectrum():
    x = LogMel(SPEC)(noisy_tone(500.0)[None])
    out = griffin_lim(x, SPEC, n_iter=32)
    assert out.shape == (1, SPEC.num_samples)
    again = LogMel(SPEC)(out)
    assert (again - x).abs().mean() < 0.15  # 7.5 dB
    assert torch.equal(again.mean(2).argmax(1), x.mean(2).argmax(1))  # the tone's band
    assert torch.equal(
        griffin_lim(x, SPEC, n_iter=4, seed=3), griffin_lim(x, SPEC, n_iter=4, seed=3)
    )


def test_spectrogram_png_round_trip_keeps_values_and_settings(tmp_path):
    x = LogMel(SPEC)(tone(700.0))
    path = save_spectrogram_png(x, tmp_path / "s.png", SPEC, scale=3)
    from PIL import Image

    assert Image.open(path).size == (3 * SPEC.frames, 3 * SPEC.n_mels)
    back, config = load_spectrogram_png(path)
    assert config == SPEC
    assert (back - x).abs().max() <= 1 / 127.5 + 1e-6
    (tmp_path / "other.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="other.png"):
        load_spectrogram_png(tmp_path / "other.png")
