"""`diffuse train|sample|edit|eval audio`, `train|eval vocoder`, `train audio-judge` end to end on
a small folder of labelled tones: every command runs and leaves files people can use."""

import json
import math

import numpy as np
import pytest
import soundfile
import torch

from diffuse.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: avoid OpenMP threads waiting on a shared CPU
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tone_folder(tmp_path_factory):
    """Two 'words' (low and high tones) by two speakers, FSDD-style names."""
    folder = tmp_path_factory.mktemp("tones")
    rate, t = 8000, np.arange(3000) / 8000
    for label, pitch in (("lo", 300.0), ("hi", 1500.0)):
        for speaker, amp in (("ann", 0.2), ("bob", 0.4)):
            for index in range(3):
                wave = amp * np.sin(2 * math.pi * (pitch + 20 * index) * t)
                soundfile.write(str(folder / f"{label}_{speaker}_{index}.wav"), wave, rate)
    return folder


DATA = ["--pattern", "{label}_{speaker}_{index}", "--seconds", "0.2"]


def test_train_sample_edit_and_eval_audio_from_the_command_line(tone_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "audio",
                "--data",
                str(tone_folder),
                *DATA,
                "--preset",
                "tiny",
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert (run / "final" / "model.safetensors").is_file()
    record = json.loads((run / "run.json").read_text())
    assert record["train_config"]["steps"] == 3 and "commit" in record["git"]

    samples = tmp_path / "samples"
    assert (
        main(
            [
                "sample",
                "audio",
                "--model",
                str(run / "final"),
                "--labels",
                "all",
                "--speakers",
                "bob",
                "--n",
                "4",
                "--steps",
                "3",
                "--out",
                str(samples),
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in (samples / "samples.jsonl").read_text().splitlines()]
    assert [x["label"] for x in lines] == ["hi", "lo", "hi", "lo"]
    assert {x["speaker"] for x in lines} == {"bob"}
    wave, rate = soundfile.read(str(samples / lines[0]["wav"]))
    assert rate == 8000 and wave.ndim == 1 and len(wave) > 1500
    assert (samples / lines[0]["png"]).is_file()

    edited = tmp_path / "edited"
    source = tone_folder / "lo_ann_0.wav"
    assert (
        main(
            [
                "edit",
                "audio",
                "--model",
                str(run / "final"),
                "--input",
                str(source),
                "--gap",
                "0.05:0.1",
                "--label",
                "lo",
                "--steps",
                "3",
                "--out",
                str(edited),
            ]
        )
        == 0
    )
    assert (edited / "lo_ann_0_edit0.wav").is_file()
    # a spectrogram PNG can be edited too
    assert (
        main(
            [
                "edit",
                "audio",
                "--model",
                str(run / "final"),
                "--input",
                str(samples / lines[0]["png"]),
                "--keep-until",
                "0.1",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "continued"),
            ]
        )
        == 0
    )

    judge = tmp_path / "judge"
    assert (
        main(
            [
                "train",
                "audio-judge",
                "--data",
                str(tone_folder),
                *DATA,
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--out",
                str(judge),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "audio",
                "--model",
                str(run / "final"),
                "--judge",
                str(judge / "final"),
                "--data",
                str(tone_folder),
                *DATA[:2],
                "--per-class",
                "2",
                "--steps",
                "2",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert 0 <= scores["accuracy"] <= 1 and scores["count"] == 4


def test_train_and_eval_vocoder_from_the_command_line(tone_folder, tmp_path, capsys):
    out = tmp_path / "vocoder"
    assert (
        main(
            [
                "train",
                "vocoder",
                "--data",
                str(tone_folder),
                *DATA,
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--dim",
                "16",
                "--layers",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            ["eval", "vocoder", "--vocoder", str(out / "final"), "--data", str(tone_folder), *DATA]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert scores["count"] == 12 and scores["real_time_factor"] > 0
    assert (
        main(["eval", "vocoder", "--vocoder", "griffin-lim", "--data", str(tone_folder), *DATA])
        == 0
    )


def test_bad_input_is_reported_with_the_file(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x_y_0.wav").write_bytes(b"nonsense")
    assert main(["train", "audio", "--data", str(bad), *DATA, "--out", str(tmp_path / "o")]) == 1
    assert "x_y_0.wav: not a readable audio file" in capsys.readouterr().err


def test_the_same_command_twice_trains_bit_identical_weights(tone_folder, tmp_path):
    from safetensors.torch import load_file

    argv = ["train", "audio", "--data", str(tone_folder), *DATA, "--preset", "tiny"]
    argv += ["--steps", "2", "--batch-size", "4"]
    for name in ("a", "b"):
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
    a, b = (load_file(tmp_path / n / "final" / "model.safetensors") for n in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_wav_format_float_writes_float_wavs_with_their_levels_recorded(tmp_path, capsys):
    from diffaudio.model import AudioUNet, audio_unet_config
    from diffaudio.outputs import WAV_FORMATS
    from diffaudio.spectrogram import spectrogram_config
    from diffcore.io import save_pretrained
    from diffuse.commands.audio import WAV_FORMATS as CLI_FORMATS

    assert CLI_FORMATS == WAV_FORMATS
    torch.manual_seed(0)
    model = save_pretrained(
        AudioUNet(audio_unet_config("tiny", spectrogram_config(8000, 0.2))), tmp_path / "model"
    )
    out = tmp_path / "samples"
    argv = ["sample", "audio", "--model", str(model), "--n", "2", "--steps", "2"]
    assert main([*argv, "--wav-format", "float", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert soundfile.info(str(out / line["wav"])).subtype == "FLOAT"
        wave, _ = soundfile.read(str(out / line["wav"]), dtype="float32")
        level = line["level"]
        assert abs(wave).max() <= 10 ** (-1 / 20) + 1e-6  # never above -1 dBFS
        if level["gain_db"] == 0:  # quiet: written as generated
            assert abs(wave).max() == pytest.approx(level["peak"], rel=1e-4)
    loud = sum(line["level"]["gain_db"] < 0 for line in lines)
    err = capsys.readouterr().err
    assert (f"{loud} of 2 clips peaked above -1 dBFS" in err) == (loud > 0)
    assert main([*argv, "--wav-format", "mp3", "--out", str(out)]) == 2
    assert "unknown value 'mp3', --wav-format, expected one of: pcm16, float" in (
        capsys.readouterr().err
    )


def test_process_crappifier_trains_a_spectrogram_restorer_that_samples_and_edits(
    tone_folder, tmp_path, capsys
):
    run = tmp_path / "restorer"
    argv = ["train", "audio", "--data", str(tone_folder), *DATA, "--preset", "tiny"]
    argv += ["--steps", "2", "--batch-size", "4"]
    spec = ["--process", "lowpass+time_mask+noise:0.2", "--set", 'weighting="min_snr"']
    assert main([*argv, *spec, "--out", str(run)]) == 0
    config = json.loads((run / "final" / "config.json").read_text())
    assert config["degradation"] == "lowpass+time_mask+noise:0.2" and len(config["start"]) == 1
    assert config["weighting"] == "min_snr"  # --set reaches the config
    model = ["--model", str(run / "final"), "--steps", "3"]
    samples = tmp_path / "samples"
    assert main(["sample", "audio", *model, "--n", "2", "--out", str(samples)]) == 0
    lines = (samples / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["sampler"] == "cold"
    source = str(tone_folder / "lo_ann_0.wav")
    edit = ["edit", "audio", *model, "--input", source, "--gap", "0.05:0.1"]
    assert main([*edit, "--sampler", "direct", "--out", str(tmp_path / "edited")]) == 0
    assert (tmp_path / "edited" / "lo_ann_0_edit0.wav").is_file()
    capsys.readouterr()
    assert main([*argv, "--process", "jpeg", "--out", str(tmp_path / "x")]) == 2
    assert "of blur, lowpass, freq_mask, time_mask, downsample, noise" in capsys.readouterr().err


def test_refine_audio_edits_every_recording_of_a_folder_from_one_strength(
    tone_folder, tmp_path, capsys
):
    run = tmp_path / "run"
    argv = ["train", "audio", "--data", str(tone_folder), *DATA, "--preset", "tiny"]
    assert main([*argv, "--steps", "2", "--batch-size", "4", "--out", str(run)]) == 0
    model = ["--model", str(run / "final"), "--steps", "4"]
    out = tmp_path / "refined"
    argv = ["refine", "audio", *model, "--input", str(tone_folder), "--strength", "0.5"]
    assert main([*argv, "--out", str(out)]) == 0
    wavs = sorted(p.name for p in out.glob("*_refined.wav"))
    assert wavs == sorted(f"{p.stem}_refined.wav" for p in tone_folder.glob("*.wav"))
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {r["strength"] for r in rows} == {0.5} and len(rows) == len(wavs)
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["refine", "audio", *model, "--input", str(empty), "--strength", "0.5"]
    assert main([*argv, "--out", str(tmp_path / "none")]) == 1
    assert "no .wav file in" in capsys.readouterr().err
    # without --strength: each recording's own level, as the model's level predictor reads it
    argv = ["refine", "audio", *model, "--input", str(tone_folder), "--out", str(out)]
    assert main(argv) == 2
    assert "train audio-level" in capsys.readouterr().err
    level = ["train", "audio-level", "--model", str(run), "--data", str(tone_folder), *DATA]
    assert main([*level, "--steps", "3", "--batch-size", "4", "--out", str(tmp_path / "lv")]) == 0
    assert (run / "final" / "level" / "config.json").is_file()
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == len(wavs) and all(0 < r["strength"] <= 1 for r in rows)


def test_a_spectrogram_cascade_trains_base_and_stage_apart_and_samples_them_in_order(
    tone_folder, tmp_path
):
    argv = ["train", "audio", "--data", str(tone_folder), *DATA, "--preset", "tiny"]
    argv += ["--steps", "2", "--batch-size", "4"]
    base, stage = tmp_path / "base", tmp_path / "stage"
    assert main([*argv, "--set", "size=[16,6]", "--out", str(base)]) == 0
    assert main([*argv, "--set", "low_res=[16,6]", "--out", str(stage)]) == 0
    samples = tmp_path / "samples"
    sample = ["sample", "audio", "--model", str(base / "final"), "--stages", str(stage / "final")]
    assert main([*sample, "--n", "2", "--steps", "3", "--out", str(samples)]) == 0
    wavs = sorted(samples.glob("*.wav"))
    assert len(wavs) == 2
    wave, rate = soundfile.read(str(wavs[0]))
    config = json.loads((stage / "final" / "config.json").read_text())
    assert rate == 8000 and config["low_res"] == [16, 6]
    assert len(wave) == config["spectrogram"]["hop_length"] * (config["spectrogram"]["frames"] - 1)
    from diffaudio.spectrogram import load_spectrogram_png

    picture, _ = load_spectrogram_png(wavs[0].with_suffix(".png"))  # the stage's full grid
    assert picture.shape == (32, config["spectrogram"]["frames"])
