"""`diffuse train|sample|edit|eval image` end to end on a tiny image folder."""

import json

import pytest
import torch
from PIL import Image

from diffuse.cli import main


@pytest.fixture(scope="module")
def trained_run(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(
        [
            "train",
            "image",
            "--data",
            str(image_folder),
            "--preset",
            "tiny",
            "--steps",
            "6",
            "--batch-size",
            "8",
            "--checkpoint-every",
            "3",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return out


def test_train_writes_a_model_checkpoints_a_preview_and_its_settings(trained_run):
    assert (trained_run / "final" / "model.safetensors").is_file()
    assert (trained_run / "checkpoints").is_dir()
    assert (trained_run / "samples.png").is_file()
    run = json.loads((trained_run / "run.json").read_text())
    assert run["arguments"]["preset"] == "tiny"
    assert run["model_config"]["class_names"] == ["left", "top"]


def test_sample_writes_a_grid_and_one_png_per_image(trained_run, tmp_path, capsys):
    code = main(
        [
            "sample",
            "image",
            "--model",
            str(trained_run / "final"),
            "--n",
            "4",
            "--labels",
            "top",
            "--steps",
            "3",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    singles = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert singles == ["0000_top.png", "0001_top.png", "0002_top.png", "0003_top.png"]
    assert Image.open(tmp_path / "grid.png").mode == "L"
    assert "grid" in capsys.readouterr().out


def test_edit_does_img2img_and_inpainting_of_files(trained_run, image_folder, tmp_path):
    inputs = [str(image_folder / "left" / "0.png"), str(image_folder / "top" / "1.png")]
    model = str(trained_run / "final")
    common = ["--model", model, "--steps", "4", "--labels", "left", "--device", "cpu"]
    assert (
        main(
            [
                "edit",
                "image",
                *common,
                "--input",
                *inputs,
                "--strength",
                "0.3",
                "--out",
                str(tmp_path / "i2i"),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "i2i" / "edited").iterdir()) == ["0.png", "1.png"]

    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (4, 0, 8, 8))  # repaint the right half
    mask.save(tmp_path / "mask.png")
    assert (
        main(
            [
                "edit",
                "image",
                *common,
                "--input",
                *inputs,
                "--mask",
                str(tmp_path / "mask.png"),
                "--out",
                str(tmp_path / "inpaint"),
            ]
        )
        == 0
    )
    before = Image.open(inputs[0]).crop((0, 0, 4, 8)).tobytes()
    after = Image.open(tmp_path / "inpaint" / "edited" / "0.png").crop((0, 0, 4, 8)).tobytes()
    assert before == after  # the kept half is untouched


def test_judge_training_and_eval_print_fid_kid_and_accuracy(
    trained_run, image_folder, tmp_path, capsys
):
    judge = tmp_path / "judge"
    assert (
        main(
            [
                "train",
                "image-judge",
                "--data",
                str(image_folder),
                "--test-split",
                "train",
                "--steps",
                "3",
                "--batch-size",
                "8",
                "--out",
                str(judge),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "accuracy on train" in capsys.readouterr().out
    assert (
        main(
            [
                "eval",
                "image",
                "--model",
                str(trained_run / "final"),
                "--judge",
                str(judge / "final"),
                "--data",
                str(image_folder),
                "--split",
                "train",
                "--n",
                "8",
                "--steps",
                "3",
                "--out",
                str(tmp_path / "eval"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "FID" in printed and "KID" in printed and "judge accuracy" in printed
    report = json.loads((tmp_path / "eval" / "run.json").read_text())["report"]
    assert report["samples"] == 8 and 0 <= report["accuracy"] <= 1


def test_help_lists_the_image_commands(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "image" in capsys.readouterr().out


def test_process_flow_trains_a_flow_matching_model_that_samples_and_edits(image_folder, tmp_path):
    out = tmp_path / "flow"
    argv = ["train", "image", "--data", str(image_folder), "--preset", "tiny", "--steps", "3"]
    assert main([*argv, "--batch-size", "8", "--process", "flow", "--out", str(out)]) == 0
    config = json.loads((out / "final" / "config.json").read_text())
    fields = ("schedule", "prediction", "weighting", "time_sampling")
    assert [config[k] for k in fields] == ["flow", "flow", "uniform", "logit_normal"]
    samples = tmp_path / "samples"
    argv = ["sample", "image", "--model", str(out / "final"), "--n", "2", "--steps", "4"]
    assert main([*argv, "--sampler", "dpmpp_3m", "--out", str(samples)]) == 0
    assert len(list((samples / "images").glob("*.png"))) == 2
    assert main(["train", "image", "--data", str(image_folder), "--process", "gauss"]) == 2


def test_set_overrides_fields_of_the_models_config(image_folder, tmp_path, capsys):
    out = tmp_path / "eps"
    argv = ["train", "image", "--data", str(image_folder), "--preset", "tiny", "--steps", "2"]
    argv += ["--batch-size", "8", "--no-preview", "--set", 'prediction="eps"']
    assert main([*argv, "--set", 'weighting="uniform"', "--out", str(out)]) == 0
    config = json.loads((out / "final" / "config.json").read_text())
    assert (config["prediction"], config["weighting"]) == ("eps", "uniform")
    capsys.readouterr()
    assert main([*argv, "--set", "colour=1", "--out", str(tmp_path / "x")]) == 1
    assert "unknown model settings ['colour']" in capsys.readouterr().err


def test_a_cascade_trains_base_and_stage_apart_and_samples_them_in_order(image_folder, tmp_path):
    common = ["--data", str(image_folder), "--preset", "tiny", "--steps", "2", "--no-preview"]
    common += ["--batch-size", "8"]
    base, stage = tmp_path / "base", tmp_path / "stage"
    assert (
        main(["train", "image", *common, "--size", "4x4", "--fit", "resize", "--out", str(base)])
        == 0
    )
    assert main(["train", "image", *common, "--set", "low_res=[4,4]", "--out", str(stage)]) == 0
    assert json.loads((stage / "final" / "config.json").read_text())["low_res"] == [4, 4]
    out = tmp_path / "samples"
    sample = ["sample", "image", "--model", str(base), "--stages", str(stage), "--n", "2"]
    assert main([*sample, "--steps", "3", "--out", str(out)]) == 0
    sizes = {Image.open(p).size for p in (out / "images").glob("*.png")}
    assert sizes == {(8, 8)}  # the stage's size
    assert main(["sample", "image", "--model", str(stage), "--n", "1", "--out", str(out)]) == 1


def test_process_crappifier_trains_a_restorer_that_samples_edits_and_inpaints(
    image_folder, tmp_path, capsys
):
    out = tmp_path / "restorer"
    argv = ["train", "image", "--data", str(image_folder), "--preset", "tiny", "--steps", "3"]
    spec = "blur:2+jpeg:10+noise:0.3"
    assert main([*argv, "--batch-size", "8", "--process", spec, "--out", str(out)]) == 0
    assert (out / "samples.png").is_file()  # the preview samples with "cold" by itself
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["degradation"] == spec and len(config["start"]) == 1  # one (mean, std)
    model = ["--model", str(out / "final"), "--steps", "4", "--device", "cpu"]
    for sampler in ("cold", "direct"):
        samples = tmp_path / sampler
        code = main(
            ["sample", "image", *model, "--n", "2", "--sampler", sampler, "--out", str(samples)]
        )
        assert code == 0
        assert len(list((samples / "images").glob("*.png"))) == 2
    inputs = [str(image_folder / "left" / "0.png")]
    edit = ["edit", "image", *model, "--input", *inputs]
    assert main([*edit, "--strength", "0.5", "--out", str(tmp_path / "edit")]) == 0
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (4, 0, 8, 8))  # repaint the right half
    mask.save(tmp_path / "mask.png")
    assert main([*edit, "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "in")]) == 0
    before = Image.open(inputs[0]).crop((0, 0, 4, 8)).tobytes()
    after = Image.open(tmp_path / "in" / "edited" / "0.png").crop((0, 0, 4, 8)).tobytes()
    assert before == after  # the kept half is untouched
    capsys.readouterr()
    bad = main(["sample", "image", *model, "--sampler", "ddim", "--out", str(tmp_path / "x")])
    assert bad == 1
    assert (
        "unknown refinement sampler 'ddim'; expected one of cold, direct" in capsys.readouterr().err
    )
    assert main([*argv, "--process", "blur+lowpass", "--out", str(tmp_path / "y")]) == 2
    assert "of blur, downsample, pixelate, jpeg, noise" in capsys.readouterr().err
    assert main([*argv, "--process", "jpeg:500", "--out", str(tmp_path / "z")]) == 1
    assert "min_quality must be an int in [1, 100], got 500" in capsys.readouterr().err


def test_refine_reads_each_inputs_level_with_the_models_level_predictor(
    trained_run, image_folder, tmp_path, capsys
):
    out = tmp_path / "restorer"
    data = ["--data", str(image_folder), "--batch-size", "8", "--device", "cpu"]
    argv = ["train", "image", *data, "--preset", "tiny", "--steps", "3", "--no-preview"]
    assert main([*argv, "--process", "blur:2+noise:0.3", "--out", str(out)]) == 0
    inputs = ["--input", str(image_folder / "left"), "--steps", "4", "--device", "cpu"]
    refine = ["refine", "image", "--model", str(out), *inputs]
    capsys.readouterr()
    assert main([*refine, "--out", str(tmp_path / "x")]) == 2  # no predictor yet
    assert "no level predictor" in capsys.readouterr().err
    level = ["train", "image-level", "--model", str(out), *data, "--steps", "3"]
    assert main([*level, "--out", str(tmp_path / "level")]) == 0
    assert (out / "final" / "level" / "model.safetensors").is_file()
    assert main([*refine, "--out", str(tmp_path / "auto")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "auto" / "refine.jsonl").read_text().splitlines()]
    assert len(rows) == len(list((image_folder / "left").iterdir()))
    assert all(0 < r["strength"] <= 1 for r in rows)
    assert len(list((tmp_path / "auto" / "refined").iterdir())) == len(rows)
    # a fixed strength, and a Gaussian model as the refiner
    gaussian = ["refine", "image", "--model", str(trained_run), *inputs, "--strength", "0.3"]
    assert main([*gaussian, "--out", str(tmp_path / "fixed")]) == 0
    rows = (tmp_path / "fixed" / "refine.jsonl").read_text().splitlines()
    assert {json.loads(x)["strength"] for x in rows} == {0.3}


def test_distill_writes_rounds_that_sample_and_evaluate_in_their_own_calls(
    trained_run, image_folder, tmp_path, capsys
):
    out = tmp_path / "distilled"
    common = ["--data", str(image_folder), "--device", "cpu"]
    args = ["distill", "image", "--model", str(trained_run), "--steps", "2", "--batch-size", "8"]
    assert main([*args, "--calls", "1", "--teacher-calls", "4", "--out", str(out), *common]) == 0
    printed = capsys.readouterr().out
    assert "2 rounds of 2 steps: 4 -> [2, 1] calls" in printed
    assert "samples with DDIM in 1 calls" in printed
    student = out / "steps_1" / "final"
    assert json.loads((student / "sampling.json").read_text())["steps"] == 1
    # sampling and eval follow the folder's sampler and steps unless told otherwise
    code = main(["sample", "image", "--model", str(student), "--n", "2", "--out", str(tmp_path)])
    assert code == 0
    run = json.loads((tmp_path / "run.json").read_text())["arguments"]
    assert run["sampler"] is None and run["steps"] is None
    judge = tmp_path / "judge"
    judge_args = ["train", "image-judge", "--steps", "2", "--batch-size", "8", "--out", str(judge)]
    assert main([*judge_args, "--test-split", "train", *common]) == 0
    evaluate = ["eval", "image", "--model", str(student), "--judge", str(judge / "final")]
    assert main([*evaluate, "--n", "4", "--split", "train", *common]) == 0
    assert "4 samples, ddim x1" in capsys.readouterr().out
    bad = main(
        [*args, "--calls", "3", "--teacher-calls", "8", "--out", str(tmp_path / "x"), *common]
    )
    assert bad == 2
    assert "--teacher-calls, expected e.g. 24" in capsys.readouterr().err


def test_experts_per_noise_range_train_apart_and_sample_together(image_folder, tmp_path, capsys):
    common = ["--data", str(image_folder), "--preset", "tiny", "--steps", "3", "--batch-size", "8"]
    common += ["--device", "cpu"]
    for name, span in (("low", "0,0.4"), ("high", "0.4,1")):
        out = tmp_path / name
        assert main(["train", "image", *common, "--noise-range", span, "--out", str(out)]) == 0
        config = json.loads((out / "final" / "config.json").read_text())
        assert config["time_range"] == [float(v) for v in span.split(",")]
    low, high = str(tmp_path / "low"), str(tmp_path / "high")
    sample = ["sample", "image", "--n", "2", "--steps", "3", "--device", "cpu"]
    assert main([*sample, "--model", low, "--experts", high, "--out", str(tmp_path / "s")]) == 0
    assert len(list((tmp_path / "s" / "images").iterdir())) == 2
    capsys.readouterr()
    assert main([*sample, "--model", low, "--out", str(tmp_path / "alone")]) == 1
    assert "split the times" in capsys.readouterr().err
    bad = main(
        ["train", "image", *common, "--noise-range", "0.5,0.2", "--out", str(tmp_path / "x")]
    )
    assert bad == 2
    assert "0 <= LO < HI <= 1" in capsys.readouterr().err


def test_init_starts_an_expert_from_a_full_model(trained_run, image_folder, tmp_path, capsys):
    common = ["--data", str(image_folder), "--preset", "tiny", "--batch-size", "8", "--lr", "1e-9"]
    out = tmp_path / "expert"
    args = ["train", "image", *common, "--steps", "1", "--noise-range", "0.5,1"]
    assert main([*args, "--init", str(trained_run), "--out", str(out), "--device", "cpu"]) == 0
    from safetensors.torch import load_file

    start = load_file(trained_run / "final" / "model.safetensors")
    after = load_file(out / "final" / "model.safetensors")
    # a near-zero learning rate: the expert is still (almost exactly) the model it started from
    assert max(float((start[k] - after[k]).abs().max()) for k in start) < 1e-4
    assert main([*args, "--init", str(tmp_path), "--out", str(tmp_path / "y")]) == 1
    assert "--init, expected" in capsys.readouterr().err


def test_a_diverging_run_stops_with_one_line_and_no_model(image_folder, tmp_path, capsys):
    out = tmp_path / "nan"
    args = ["train", "image", "--data", str(image_folder), "--preset", "tiny", "--steps", "6"]
    args += ["--batch-size", "8", "--lr", "1e6", "--out", str(out), "--device", "cpu"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("diffuse: error: the loss was nan at step") and "learning rate" in err
    assert not (out / "final").exists()


def test_the_same_command_twice_trains_bit_identical_weights(image_folder, tmp_path):
    from safetensors.torch import load_file

    args = ["train", "image", "--data", str(image_folder), "--preset", "tiny", "--steps", "3"]
    args += ["--batch-size", "8", "--device", "cpu", "--seed", "7"]
    weights = []
    for name in ("a", "b", "c"):
        seed = ["--seed", "8"] if name == "c" else []
        assert main([*args, *seed, "--out", str(tmp_path / name)]) == 0
        weights.append(load_file(tmp_path / name / "final" / "model.safetensors"))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_a_mistyped_data_path_fails_at_once_without_the_hub(tmp_path):
    """The bug: `--data data/fmnist` read as a Hub id spent ~45 s retrying the network."""
    import os
    import subprocess
    import sys
    import time

    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # never the network
    argv = ["train", "image", "--data", "data/fmnist", "--out", str(tmp_path / "out")]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "diffuse.cli", *argv],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert time.monotonic() - start < 30
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "diffuse: error: data/fmnist does not exist (for a Hugging Face Hub data set write "
        "hub:data/fmnist), --data, expected a folder (Hub parquet layout, or a subfolder per "
        "class), a .parquet file, or hub:NAME"
    ]
    assert not (tmp_path / "out").exists()


HOLD_OUT = """
import sys
from diffcore.training.lock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_train_into_a_held_out_is_refused_naming_the_holder(
    image_folder, tmp_path, capsys
):
    import subprocess
    import sys

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OUT, str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["train", "image", "--data", str(image_folder), "--preset", "tiny", "--steps", "2"]
        code = main([*argv, "--out", str(out), "--device", "cpu"])
        err = capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # refused before run.json
    finally:
        holder.communicate("\n", timeout=60)
    assert code == 1
    assert (
        err.startswith(f"diffuse: error: the run folder {out} is in use") and err.count("\n") == 1
    )
    assert f"PID {holder.pid}" in err


def test_an_out_that_cannot_be_written_is_one_line_and_exit_1(image_folder, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "run"
    code = main(["train", "image", "--data", str(image_folder), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        err.startswith(f"diffuse: error: cannot write the run folder {out} (")
        and err.count("\n") == 1
    )
