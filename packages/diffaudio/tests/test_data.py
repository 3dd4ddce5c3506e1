"""File and dataset adapters: good, corrupt, empty, silent and short inputs; labels from file
names, metadata and folders; resampling; the length policy; the FSDD layout."""

import math

import numpy as np
import pytest
import soundfile
import torch

from diffaudio.data import (
    ClipChecks,
    fit_length,
    load_audio,
    load_audio_folder,
    read_audio,
)
from diffaudio.hf import load_hf_audio


def write_tone(path, freq=440.0, seconds=0.3, rate=8000, amplitude=0.3, **kwargs):
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), amplitude * np.sin(2 * math.pi * freq * t), rate, **kwargs)
    return path


def test_wav_flac_and_ogg_files_read_as_mono_at_the_requested_rate(tmp_path):
    wav = write_tone(tmp_path / "a.wav", rate=16000)
    flac = write_tone(tmp_path / "b.flac")
    ogg = write_tone(tmp_path / "c.ogg")
    stereo = tmp_path / "d.wav"
    soundfile.write(str(stereo), np.full((800, 2), [0.2, 0.4]), 8000)
    assert read_audio(wav, 8000).shape == (2400,)  # 0.3 s resampled from 16 kHz
    assert read_audio(flac, 8000).shape == (2400,)
    assert read_audio(ogg, 8000).shape[0] == 2400
    torch.testing.assert_close(read_audio(stereo, 8000), torch.full((800,), 0.3), atol=1e-4, rtol=0)


def test_corrupt_empty_silent_and_short_files_are_refused_by_name(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage")
    soundfile.write(str(tmp_path / "empty.wav"), np.zeros(0), 8000)
    soundfile.write(str(tmp_path / "silent.wav"), np.zeros(4000), 8000)
    write_tone(tmp_path / "short.wav", seconds=0.01)
    for name, reason in [
        ("corrupt", "not a readable audio file"),
        ("empty", "no samples"),
        ("silent", "silent"),
        ("short", "shorter than"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        (tmp_path / f"{name}.wav").rename(folder / f"{name}.wav")
        with pytest.raises(ValueError, match=f"{name}.wav.*{reason}"):
            load_audio_folder(folder, sample_rate=8000, num_samples=800, progress=False)


def test_skip_mode_leaves_bad_files_out_and_counts_them(tmp_path):
    write_tone(tmp_path / "good.wav")
    soundfile.write(str(tmp_path / "quiet.wav"), np.full(4000, 1e-5), 8000)
    (tmp_path / "broken.flac").write_bytes(b"fLaC broken")
    clips = load_audio_folder(
        tmp_path, sample_rate=8000, num_samples=800, on_error="skip", progress=False
    )
    assert clips.sources == (str(tmp_path / "good.wav"),)
    assert len(clips.skipped) == 2 and any("quiet.wav" in s for s in clips.skipped)
    # A stricter silence threshold rejects a quiet-but-audible file too.
    (tmp_path / "broken.flac").unlink()
    with pytest.raises(ValueError, match="good.wav: silent"):
        load_audio_folder(
            tmp_path,
            sample_rate=8000,
            num_samples=800,
            checks=ClipChecks(silence_db=0.0),
            progress=False,
        )


def test_short_clips_are_padded_at_the_end_and_long_ones_cut_to_the_loudest_window():
    short = torch.ones(5)
    assert torch.equal(fit_length(short, 8), torch.tensor([1.0] * 5 + [0.0] * 3))
    long = torch.zeros(100)
    long[60:70] = 1.0
    cut = fit_length(long, 20, hop=5)
    assert cut.shape == (20,) and cut.sum() == 10  # the whole burst is kept


def test_labels_and_speakers_come_from_a_file_name_pattern(tmp_path):
    for digit, speaker, index in [(3, "ann", 0), (10, "bob", 1), (2, "ann", 2)]:
        write_tone(tmp_path / f"{digit}_{speaker}_{index}.wav", freq=200 + 100 * digit)
    clips = load_audio_folder(
        tmp_path,
        sample_rate=8000,
        num_samples=1000,
        pattern="{label}_{speaker}_{index}",
        progress=False,
    )
    assert clips.label_names == ("2", "3", "10")  # numeric order
    assert clips.speaker_names == ("ann", "bob")
    by_source = {s.split("/")[-1]: i for i, s in enumerate(clips.sources)}
    assert clips.labels[by_source["10_bob_1.wav"]] == 2
    assert clips.waves.shape == (3, 1000)
    test, train = clips.split_by_field("index", [0, 1])
    assert len(test) == 2 and len(train) == 1 and train.label_names == clips.label_names
    (tmp_path / "odd-name.wav").write_bytes((tmp_path / "3_ann_0.wav").read_bytes())
    with pytest.raises(ValueError, match="odd-name.wav: file name does not match"):
        load_audio_folder(
            tmp_path,
            sample_rate=8000,
            num_samples=1000,
            pattern="{label}_{speaker}_{index}",
            progress=False,
        )


def test_labels_come_from_a_metadata_file_or_class_folders(tmp_path):
    (tmp_path / "yes").mkdir()
    (tmp_path / "no").mkdir()
    write_tone(tmp_path / "yes" / "a.wav")
    write_tone(tmp_path / "no" / "b.wav")
    clips = load_audio_folder(tmp_path, sample_rate=8000, num_samples=800, progress=False)
    assert clips.label_names == ("no", "yes") and clips.speakers is None
    (tmp_path / "metadata.csv").write_text(
        "file_name,label,speaker\nyes/a.wav,up,x\nno/b.wav,down,y\n"
    )
    clips = load_audio_folder(tmp_path, sample_rate=8000, num_samples=800, progress=False)
    assert clips.label_names == ("down", "up") and clips.speaker_names == ("x", "y")


def test_a_hugging_face_dataset_with_an_audio_column(tmp_path):
    import datasets

    path = write_tone(tmp_path / "x.wav", rate=16000)
    rows = {
        "audio": [
            {"bytes": path.read_bytes(), "path": "x.wav"},
            {"bytes": None, "path": str(path)},
        ],
        "label": [1, 0],
    }
    features = datasets.Features(
        {"audio": datasets.Audio(decode=False), "label": datasets.ClassLabel(names=["cat", "dog"])}
    )
    table = datasets.Dataset.from_dict(rows).cast(features)
    table.to_parquet(str(tmp_path / "data.parquet"))
    for source in (table, tmp_path / "data.parquet"):
        clips = load_audio(source, sample_rate=8000, num_samples=3000, progress=False)
        assert clips.label_names == ("cat", "dog")
        assert clips.labels.tolist() == [1, 0]
        assert clips.waves.shape == (2, 3000) and clips.waves[:, 2400:].abs().max() == 0
    broken = datasets.Dataset.from_dict({"audio": [{"bytes": b"junk", "path": "j.wav"}]})
    with pytest.raises(ValueError, match="row 0"):
        load_hf_audio(broken, sample_rate=8000, num_samples=800, label_column=None, progress=False)


def test_fsdd_loads_through_the_folder_adapter_with_its_test_split(shared_data):
    clips = load_audio(
        shared_data / "fsdd" / "recordings",
        sample_rate=8000,
        num_samples=6016,
        pattern="{label}_{speaker}_{index}",
        progress=False,
    )
    assert len(clips) == 3000 and clips.label_names == tuple("0123456789")
    assert len(clips.speaker_names) == 6
    test, train = clips.split_by_field("index", range(5))
    assert (len(test), len(train)) == (300, 2700)
    assert clips.waves.abs().max() <= 1.0
