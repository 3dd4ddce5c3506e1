"""Fuzzing the audio file readers: damaged WAV files (truncated, wrong header fields, NaN
samples, no samples, absurd sample rates), spectrogram PNGs with damaged settings and
metadata files give a ValueError naming the file or a correct waveform, never another
exception type, a hang or a wrong value.

The seed corpus is made here (WAV headers written byte by byte, so every field can be set).
Run with ``--hypothesis-show-statistics`` to see how many cases ran.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from diffaudio.data import load_audio_folder, read_audio
from diffaudio.spectrogram import load_spectrogram_png, save_spectrogram_png, spectrogram_config

FUZZ = settings(max_examples=200)  # deterministic: the root conftest's hypothesis profile
RATE = 8_000
SAMPLES = np.round(0.5 * np.sin(np.arange(400) / 7.0) * 32767).astype("<i2")  # 50 ms at 8 kHz


def wav(
    samples: bytes,
    *,
    fmt: int = 1,
    channels: int = 1,
    rate: int = RATE,
    bits: int = 16,
    data_size: int | None = None,
) -> bytes:
    """A RIFF/WAVE file with every header field as given (``data_size``: the data chunk's
    claimed length, default the true one)."""
    block = channels * bits // 8
    fmt_chunk = struct.pack(
        "<HHIIHH", fmt, channels, rate, rate * block & 0xFFFF_FFFF, block & 0xFFFF, bits
    )
    size = len(samples) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", size)
    return b"RIFF" + struct.pack("<I", len(body) + len(samples)) + body + samples


SEEDS = {
    "pcm16": wav(SAMPLES.tobytes()),
    "pcm16-stereo": wav(np.repeat(SAMPLES, 2).tobytes(), channels=2),
    "pcm8": wav((SAMPLES // 256 + 128).astype("u1").tobytes(), bits=8),
    "float32": wav((SAMPLES / 32768).astype("<f4").tobytes(), fmt=3, bits=32),
    "float64": wav((SAMPLES / 32768).astype("<f8").tobytes(), fmt=3, bits=64),
}


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A seed WAV, overwritten in a few places, truncated and/or with junk appended."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 4))):
        # the 44-byte header is where a damaged byte matters; hit it as often as the samples
        at = draw(st.integers(0, 43) | st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data + draw(st.binary(max_size=8)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _read(path: Path) -> torch.Tensor | None:
    """The waveform read from ``path`` at 8 kHz, or None after a ValueError naming it."""
    try:
        wave = read_audio(path, RATE)
    except ValueError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
        return None
    assert wave.ndim == 1 and wave.dtype == torch.float32 and len(wave) > 0
    assert wave.isfinite().all()
    return wave


def test_the_seed_files_read_back_as_their_samples(folder):
    expected = torch.as_tensor(SAMPLES / 32768, dtype=torch.float32)
    for name, data in SEEDS.items():
        path = folder / f"{name}.wav"
        path.write_bytes(data)
        wave = _read(path)
        atol = 1 / 128 if name == "pcm8" else 1e-6  # 8-bit keeps the top byte only
        assert wave is not None and torch.allclose(wave, expected, atol=atol), name


@FUZZ
@given(damaged())
@example(b"")  # an empty file
@example(SEEDS["pcm16"][:44])  # a header and no samples
@example(SEEDS["pcm16"][:45])  # half a sample
@example(SEEDS["pcm16"][:12])  # RIFF/WAVE and nothing else
def test_damaged_wav_files_give_a_named_error_or_a_finite_waveform(folder, data):
    path = folder / "damaged.wav"
    path.write_bytes(data)
    _read(path)


@FUZZ
@given(
    fmt=st.sampled_from([1, 3]) | st.integers(0, 0xFFFF),
    channels=st.sampled_from([1, 2]) | st.integers(0, 0xFFFF),
    rate=st.sampled_from([RATE, 16_000, 44_100]) | st.integers(0, 0xFFFF_FFFF),
    bits=st.sampled_from([8, 16, 24, 32, 64]) | st.integers(0, 0xFFFF),
    data_size=st.none() | st.integers(0, 0xFFFF_FFFF),
)
@example(fmt=1, channels=1, rate=0, bits=16, data_size=None)  # no sample rate
@example(fmt=1, channels=1, rate=0xFFFF_FFFF, bits=16, data_size=None)  # 4.3 GHz
@example(fmt=1, channels=1, rate=1, bits=16, data_size=None)  # 1 Hz
@example(fmt=1, channels=1, rate=7_919, bits=16, data_size=None)  # a prime rate near 8 kHz
@example(fmt=1, channels=0, rate=RATE, bits=16, data_size=None)  # no channels
@example(fmt=1, channels=1, rate=RATE, bits=16, data_size=0xFFFF_FFFF)  # a data chunk claiming 4 GB
def test_wav_headers_with_wrong_fields_give_a_named_error_or_a_finite_waveform(
    folder, fmt, channels, rate, bits, data_size
):
    path = folder / "header.wav"
    path.write_bytes(
        wav(
            SAMPLES.tobytes(), fmt=fmt, channels=channels, rate=rate, bits=bits, data_size=data_size
        )
    )
    wave = _read(path)
    if wave is not None and (fmt, channels, bits) == (1, 1, 16) and data_size in (None, 800):
        # a sound header: the 50 ms clip, resampled to 8 kHz
        assert abs(len(wave) - 400 * RATE / rate) <= 1


@pytest.mark.parametrize(
    "samples",
    [[0.1, float("nan"), 0.2], [float("inf")] * 3, [0.1, float("-inf")]],
    ids=["nan", "inf", "-inf"],
)
def test_non_finite_samples_give_a_named_error(folder, samples):
    path = folder / "nan.wav"
    path.write_bytes(wav(np.asarray(samples * 100, dtype="<f4").tobytes(), fmt=3, bits=32))
    with pytest.raises(ValueError, match="nan.wav.*NaN or infinite"):
        read_audio(path, RATE)


def test_a_wav_without_samples_gives_a_named_error(folder):
    path = folder / "empty.wav"
    path.write_bytes(wav(b""))
    with pytest.raises(ValueError, match="empty.wav"):
        read_audio(path, RATE)


# Spectrogram PNGs: the settings travel in a text chunk a person or a tool may have damaged.

CONFIG = spectrogram_config(RATE, seconds=0.1)
SETTINGS = {"scale": 1, **CONFIG.to_dict()}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def damaged_settings(draw: st.DrawFn) -> str:
    """The settings' JSON with keys dropped, values replaced or added, or the text cut."""
    fields = dict(SETTINGS)
    for key in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del fields[key]
        else:
            fields[key] = draw(JSON_VALUES)
    fields |= draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2))
    text = json.dumps(fields)
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


@FUZZ
@given(damaged_settings())
@example("")
@example("[]")
@example(json.dumps({**SETTINGS, "scale": 0}))
@example(json.dumps({**SETTINGS, "scale": -1}))
@example(json.dumps({**SETTINGS, "n_mels": "8"}))
def test_spectrogram_pngs_with_damaged_settings_give_a_named_error(folder, tmp_path_factory, text):
    path = folder / "spectrogram.png"
    save_spectrogram_png(torch.zeros(CONFIG.n_mels, CONFIG.frames), path, CONFIG, scale=1)
    _replace_settings(path, text)
    try:
        x, config = load_spectrogram_png(path)
    except ValueError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
    else:  # a changed but sound setting is the file's own (db_max=0); nothing else passes
        values = config.to_dict().values()
        assert all(type(v) in (int, float, type(None)) and math.isfinite(v or 0) for v in values)
        assert x.shape == (config.n_mels, config.frames) and x.abs().max() <= 1


def _replace_settings(path: Path, text: str) -> None:
    from PIL import Image, PngImagePlugin

    image = Image.open(path)
    image.load()
    info = PngImagePlugin.PngInfo()
    for key, value in image.info.items():
        if isinstance(value, str):
            info.add_text(key, text)
    image.save(path, pnginfo=info)


# Metadata files of a folder: labels per file, as CSV or JSON lines.


@FUZZ
@given(
    st.sampled_from(["metadata.csv", "metadata.jsonl"]),
    st.binary(max_size=64)
    | st.text(max_size=64).map(str.encode)
    | st.sampled_from(
        [
            b'file_name,label\r\na.wav,"x',
            b"1\n",
            b'"a.wav"\n',
            b"null\n",
            b"[1, 2]\n",
            b"file_name\n\xff\n",
        ]
    ),
)
@example("metadata.csv", b"file_name,label\na.wav\n")  # a short row read as label "None"
@example("metadata.jsonl", b'{"file_name": "a.wav", "label": null}\n')  # the same
@example("metadata.jsonl", b"7\n")  # a JSON line that is no object: TypeError
@example("metadata.csv", b"file_name\x00\n")  # csv.Error, not a ValueError
@example("metadata.csv", b"\x80")  # not UTF-8: an unnamed UnicodeDecodeError
def test_damaged_metadata_files_give_a_named_error_or_labels(tmp_path_factory, name, data):
    folder = tmp_path_factory.mktemp("meta")
    (folder / "a.wav").write_bytes(SEEDS["pcm16"])
    (folder / name).write_bytes(data)
    try:
        clips = load_audio_folder(folder, sample_rate=RATE, num_samples=400, progress=False)
    except ValueError as err:
        assert str(folder / name) in str(err) or "a.wav" in str(err), f"unnamed: {err}"
    else:
        assert clips.waves.shape == (1, 400)


@pytest.mark.parametrize(
    "data", [b"\xef\xbb\xbffile_name,label\r\na.wav,x\r\n", b"file_name,label\na.wav,x"]
)
def test_a_spreadsheet_csv_with_a_bom_and_crlf_gives_its_labels(tmp_path, data):
    (tmp_path / "a.wav").write_bytes(SEEDS["pcm16"])
    (tmp_path / "metadata.csv").write_bytes(data)
    clips = load_audio_folder(tmp_path, sample_rate=RATE, num_samples=400, progress=False)
    assert clips.label_names == ("x",) and clips.labels.tolist() == [0]


@pytest.mark.parametrize(
    ("array", "rate", "problem"),
    [
        ([0.1, float("nan")] * 400, RATE, "NaN or infinite"),  # passed the silence check as NaN
        ([0.1] * 800, 0, "sample rate 0 Hz"),  # ZeroDivisionError in the resampler
        ([0.1] * 800, 10**9, "sample rate 1000000000 Hz"),  # gigabytes of resampling kernel
    ],
    ids=["nan", "zero-rate", "absurd-rate"],
)
def test_a_data_set_array_with_bad_samples_or_rate_gives_a_named_error(array, rate, problem):
    import datasets

    from diffaudio.hf import load_hf_audio

    table = datasets.Dataset.from_dict({"audio": [{"array": array, "sampling_rate": rate}]})
    with pytest.raises(ValueError, match=f"row 0: .*{problem}"):
        load_hf_audio(table, sample_rate=RATE, num_samples=800, label_column=None, progress=False)


def test_an_awkward_sample_rate_is_resampled_without_a_huge_kernel(folder):
    # 44101 Hz and 8 kHz share no divisor: torchaudio's kernel would hold 44101 x 8000 taps
    path = folder / "awkward.wav"
    tone = np.round(0.5 * np.sin(np.arange(44_101) * 2 * np.pi * 440 / 44_101) * 32767)
    path.write_bytes(wav(tone.astype("<i2").tobytes(), rate=44_101))
    wave = read_audio(path, RATE)
    expected = 0.5 * torch.sin(torch.arange(RATE) * 2 * torch.pi * 440 / RATE)
    assert len(wave) == RATE and torch.allclose(wave[200:-200], expected[200:-200], atol=1e-2)
