"""Written audio: loud clips scaled to −1 dBFS instead of clamped, the share that would have
clipped reported, quiet clips untouched, float WAVs exact, NaN refused."""

import json
import math

import pytest
import soundfile
import torch

from diffaudio.outputs import fit_level, level_note, save_outputs, write_wav
from diffaudio.spectrogram import spectrogram_config

MINUS_1_DBFS = 10 ** (-1 / 20)


def sine(amplitude: float, n: int = 800) -> torch.Tensor:
    return amplitude * torch.sin(torch.linspace(0, 40 * math.pi, n))


def test_a_loud_clip_is_scaled_to_minus_1_dbfs_and_its_clipped_share_reported():
    wave = sine(1.0)
    wave[:80] = 2.0  # 10 % beyond full scale, peak +6.0 dBFS
    fitted, level = fit_level(wave)
    assert fitted.abs().max().item() == pytest.approx(MINUS_1_DBFS, rel=1e-6)
    assert level.peak == pytest.approx(2.0)
    assert level.clipped == pytest.approx(0.1)
    assert level.gain_db == pytest.approx(-1 - 20 * math.log10(2.0), abs=1e-4)
    # shape kept: scaled, not clamped (the two halves still differ by 2x)
    assert torch.allclose(fitted, wave * (MINUS_1_DBFS / 2.0))


def test_a_quiet_clip_is_left_untouched():
    wave = sine(0.5)
    fitted, level = fit_level(wave)
    assert torch.equal(fitted, wave)
    assert level.gain_db == 0.0 and level.clipped == 0.0
    assert level.peak == pytest.approx(0.5, rel=1e-3)
    assert level_note([level, level]) is None


def test_the_note_counts_the_loud_clips_and_the_worst_peak():
    loud, quiet = fit_level(sine(1.6))[1], fit_level(sine(0.3))[1]
    note = level_note([loud, quiet, quiet])
    assert note is not None and "\n" not in note
    assert note.startswith("1 of 3 clips peaked above -1 dBFS (max +4.1 dBFS, ")
    assert note.endswith("scaled down to -1 dBFS")


def test_nan_samples_are_an_error_not_silence(tmp_path):
    wave = sine(0.5)
    wave[3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite samples of 800"):
        fit_level(wave)
    with pytest.raises(ValueError, match="x.wav: the waveform has NaN"):
        write_wav(tmp_path / "x.wav", wave, 8000)
    config = spectrogram_config(8000, 0.1)
    waves = torch.stack([sine(0.5), wave])
    specs = torch.zeros(2, 1, config.n_mels, config.frames)
    with pytest.raises(ValueError, match=r"1 of 2 generated clips .*\(e.g. b\); nothing written"):
        save_outputs(tmp_path / "out", waves, specs, config, names=["a", "b"])
    assert not (tmp_path / "out").exists()


def test_float_wavs_keep_what_pcm16_rounds_away(tmp_path):
    wave = sine(0.5) + 1e-6 * torch.arange(800) % 3  # steps finer than 1/32768
    pcm = write_wav(tmp_path / "pcm.wav", wave, 8000)
    flt = write_wav(tmp_path / "float.wav", wave, 8000, wav_format="float")
    assert soundfile.info(str(flt)).subtype == "FLOAT"
    assert soundfile.info(str(pcm)).subtype == "PCM_16"
    back_float = torch.from_numpy(soundfile.read(str(flt), dtype="float32")[0])
    back_pcm = torch.from_numpy(soundfile.read(str(pcm), dtype="float32")[0])
    assert torch.equal(back_float, wave)
    assert (back_pcm - wave).abs().max() > 1e-6
    with pytest.raises(ValueError, match="unknown WAV format 'mp3'"):
        write_wav(tmp_path / "x.wav", wave, 8000, wav_format="mp3")


def test_save_outputs_levels_each_clip_and_records_its_level(tmp_path):
    config = spectrogram_config(8000, 0.1)
    waves = torch.stack([sine(3.0), sine(0.25)])
    specs = torch.zeros(2, 1, config.n_mels, config.frames)
    saved = save_outputs(
        tmp_path, waves, specs, config, names=["loud", "quiet"], wav_format="float"
    )
    loud = soundfile.read(str(tmp_path / "loud.wav"), dtype="float32")[0]
    quiet = soundfile.read(str(tmp_path / "quiet.wav"), dtype="float32")[0]
    assert abs(loud).max() == pytest.approx(MINUS_1_DBFS, rel=1e-5)
    assert abs(quiet).max() == pytest.approx(float(waves[1].abs().max()), rel=1e-6)
    lines = [json.loads(x) for x in saved.index.read_text().splitlines()]
    assert lines[0]["level"]["gain_db"] == pytest.approx(-1 - 20 * math.log10(3.0), abs=1e-3)
    assert lines[0]["level"]["clipped"] > 0.5 and lines[1]["level"]["gain_db"] == 0
    assert [lv.gain_db < 0 for lv in saved.levels] == [True, False]
