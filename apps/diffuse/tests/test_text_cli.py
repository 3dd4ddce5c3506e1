"""`diffuse train|sample|edit|eval text` end to end on a slice of Tiny Shakespeare."""

import json

import pytest
import torch

from diffuse.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    # tiny models: one thread is fastest, and two spin against each other on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def corpus(shared_data, tmp_path):
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text()[:20_000]
    path = tmp_path / "shakespeare.txt"
    path.write_text(text)
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_sample_edit_and_eval_text(tmp_path, corpus, capsys):
    run, peer = tmp_path / "run", tmp_path / "peer"
    common = ["--preset", "tiny", "--block-size", "32", "--steps", "12", "--batch-size", "8"]
    common += ["--log-every", "4", "--eval-every", "0", "--checkpoint-every", "6"]
    assert main(["train", "text", str(corpus), "--out", str(run), *common]) == 0
    assert "bits/char" in capsys.readouterr().out
    assert (run / "model" / "model.safetensors").is_file() and (run / "tokenizer").is_dir()
    assert json.loads((run / "run.json").read_text())["train_config"]["steps"] == 12
    assert (
        main(
            [
                "train",
                "text",
                str(corpus),
                "--out",
                str(peer),
                "--objective",
                "autoregressive",
                *common,
            ]
        )
        == 0
    )

    samples = tmp_path / "samples.jsonl"
    args = ["sample", "text", "--model", str(run), "--n", "2", "--steps", "8", "--seed", "3"]
    assert main([*args, "--out", str(samples)]) == 0
    records = read_jsonl(samples)
    assert len(records) == 2 and all("prompt" not in r and r["text"] for r in records)
    assert json.loads(samples.with_suffix(".run.json").read_text())["seed"] == 3
    assert main([*args, "--length", "40", "--out", str(samples)]) == 1
    assert "generates any length" in capsys.readouterr().err

    prompted = tmp_path / "prompted.jsonl"
    ranked = ["--confidence", "entropy", "--entropy-bound", "0.5"]
    assert (
        main([*args, "--prompt", "ROMEO:", "--top-p", "0.9", *ranked, "--out", str(prompted)]) == 0
    )
    sampling = json.loads(prompted.with_suffix(".run.json").read_text())["sampling"]
    assert sampling["confidence"] == "entropy" and sampling["entropy_bound"] == 0.5
    assert all(
        r["text"].startswith("ROMEO:") and r["prompt"] == "ROMEO:" for r in read_jsonl(prompted)
    )

    infills = tmp_path / "infills.jsonl"
    edit = ["edit", "text", "--model", str(run / "model"), "--steps", "4", "--out", str(infills)]
    assert main([*edit, "--text", "To be, or [MASK*4] to be"]) == 0
    (record,) = read_jsonl(infills)
    assert record["text"].startswith("To be, or ") and record["text"].endswith(" to be")
    assert len(record["text"]) == len("To be, or  to be") + 4

    report_path = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "text",
                "--model",
                str(run),
                "--data",
                str(corpus),
                "--tail",
                "0.1",
                "--mc-samples",
                "2",
                "--samples",
                str(samples),
                "--judge",
                str(peer),
                "--reference",
                str(corpus),
                "--out",
                str(report_path),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert report["likelihood"]["bound"] and report["likelihood"]["bits_per_char"] > 0
    assert report["samples"]["samples"] == 2 and report["samples"]["generative_perplexity"] > 1

    # the peer samples too (one token per pass: no sampler, steps or guidance to give)
    peer_samples = tmp_path / "peer.jsonl"
    assert (
        main(["sample", "text", "--model", str(peer), "--n", "2", "--out", str(peer_samples)]) == 0
    )
    assert len(read_jsonl(peer_samples)) == 2
    capsys.readouterr()
    assert (
        main(["sample", "text", "--model", str(peer), "--steps", "4", "--out", str(tmp_path)]) == 2
    )
    assert "one token per pass, --sampler/--steps" in capsys.readouterr().err


def test_a_block_diffusion_model_trains_samples_and_fills_from_the_command_line(tmp_path, corpus):
    run = tmp_path / "block"
    common = ["--preset", "tiny", "--block-size", "32", "--steps", "6", "--batch-size", "8"]
    common += ["--log-every", "3", "--eval-every", "0", "--checkpoint-every", "6"]
    assert (
        main(["train", "text", str(corpus), "--out", str(run), "--diffusion-block", "8", *common])
        == 0
    )
    meta = json.loads((run / "model" / "difftext.json").read_text())
    assert meta["diffusion_block"] == 8
    samples = tmp_path / "samples.jsonl"
    assert (
        main(
            [
                "sample",
                "text",
                "--model",
                str(run),
                "--n",
                "2",
                "--steps",
                "8",
                "--prompt",
                "ROMEO:",
                "--out",
                str(samples),
            ]
        )
        == 0
    )
    assert all(r["text"].startswith("ROMEO:") for r in read_jsonl(samples))
    longer = tmp_path / "longer.jsonl"  # past the block size of 32: window by window
    assert (
        main(
            [
                "sample",
                "text",
                "--model",
                str(run),
                "--n",
                "1",
                "--steps",
                "10",
                "--length",
                "80",
                "--out",
                str(longer),
            ]
        )
        == 0
    )
    (text,) = [r["text"] for r in read_jsonl(longer)]
    assert len(text.replace("[EOS]", "|")) == 80 and "[MASK]" not in text  # one token a char
    infills = tmp_path / "infills.jsonl"
    assert (
        main(
            [
                "edit",
                "text",
                "--model",
                str(run),
                "--steps",
                "4",
                "--out",
                str(infills),
                "--text",
                "To be, or [MASK*4] to be",
            ]
        )
        == 0
    )
    (record,) = read_jsonl(infills)
    assert record["text"].startswith("To be, or ") and record["text"].endswith(" to be")
    assert (
        main(
            ["sample", "text", "--model", str(run), "--sampler", "ancestral", "--out", str(samples)]
        )
        == 2
    )


def test_text_commands_report_bad_input_as_errors(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "text", str(empty), "--out", str(tmp_path / "run")]) == 1
    assert "empty.txt is empty" in capsys.readouterr().err
    assert main(["sample", "text", "--model", str(tmp_path / "nothing")]) == 1
    assert "nothing does not exist, --model" in capsys.readouterr().err
    assert main(["edit", "text", "--model", str(tmp_path)]) == 2
    assert "no templates, --text, expected --text or --input" in capsys.readouterr().err


def test_the_same_command_twice_trains_bit_identical_weights(tmp_path, corpus):
    from safetensors.torch import load_file

    argv = ["train", "text", str(corpus), "--preset", "tiny", "--block-size", "32", "--steps", "2"]
    argv += ["--batch-size", "8", "--eval-every", "0"]
    for name in ("a", "b"):
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
    a, b = (load_file(tmp_path / n / "model" / "model.safetensors") for n in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_substitution_model_trains_samples_and_fills_from_the_command_line(
    tmp_path, corpus, capsys
):
    run = tmp_path / "substitution"
    common = ["--preset", "tiny", "--block-size", "32", "--steps", "6", "--batch-size", "8"]
    common += ["--log-every", "3", "--eval-every", "3", "--checkpoint-every", "6"]
    train = ["train", "text", str(corpus), "--out", str(run), "--process", "substitution"]
    assert main([*train, *common]) == 0
    assert "no likelihood bound for a substitution model" in capsys.readouterr().out
    assert json.loads((run / "model" / "difftext.json").read_text())["corruption"] == "substitution"
    rows = read_jsonl(run / "metrics.jsonl")  # --eval-every 3 scores nothing: there is no bound
    assert [r["step"] for r in rows] == [3, 6] and not any("final" in r for r in rows)
    assert not any(k.startswith("val_") for r in rows for k in r)

    samples = tmp_path / "samples.jsonl"
    args = ["sample", "text", "--model", str(run), "--n", "2", "--steps", "6", "--seed", "1"]
    assert main([*args, "--prompt", "ROMEO:", "--out", str(samples)]) == 0
    assert all(r["text"].startswith("ROMEO:") for r in read_jsonl(samples))
    assert json.loads(samples.with_suffix(".run.json").read_text())["sampling"]["sampler"] == (
        "substitute"
    )
    confident = tmp_path / "confident.jsonl"
    assert main([*args, "--option", "resample=confidence", "--out", str(confident)]) == 0
    sampling = json.loads(confident.with_suffix(".run.json").read_text())["sampling"]
    assert sampling["sampler"] == "substitute" and sampling["resample"] == "confidence"
    assert len(read_jsonl(confident)) == 2
    assert main([*args, "--confidence", "entropy", "--out", str(confident)]) == 1
    assert "takes no option 'confidence'" in capsys.readouterr().err

    infills = tmp_path / "infills.jsonl"
    edit = ["edit", "text", "--model", str(run), "--steps", "4", "--out", str(infills)]
    assert main([*edit, "--text", "To be, or [MASK*4] to be", "--n", "2"]) == 0
    for record in read_jsonl(infills):
        assert record["text"].startswith("To be, or ") and record["text"].endswith(" to be")
        assert len(record["text"]) == len("To be, or  to be") + 4

    report_path = tmp_path / "eval.json"
    scoring = ["eval", "text", "--model", str(run), "--data", str(corpus), "--tail", "0.1"]
    assert main([*scoring, "--samples", str(samples), "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["likelihood"] == "none: a substitution model has no likelihood bound"
    assert report["samples"]["samples"] == 2


def test_a_masked_model_folder_from_before_substitution_samples_as_before(
    tmp_path, corpus, char_tokenizer_folder
):
    from difftext.model import META_NAME, save_text_model
    from difftext.tokenizer import load_tokenizer
    from difftext.training import build_model

    model = build_model("diffusion", load_tokenizer(char_tokenizer_folder), 32, preset="tiny")
    folder = save_text_model(model, tmp_path / "old")
    meta = json.loads((folder / META_NAME).read_text())
    del meta["corruption"]  # written before the field existed
    (folder / META_NAME).write_text(json.dumps(meta))
    samples = tmp_path / "samples.jsonl"
    argv = ["sample", "text", "--model", str(folder), "--n", "1", "--steps", "4"]
    assert main([*argv, "--out", str(samples)]) == 0
    assert json.loads(samples.with_suffix(".run.json").read_text())["sampling"]["sampler"] == (
        "confidence"
    )


@pytest.fixture
def char_tokenizer_folder(tmp_path):
    import string

    from difftext.tokenizer import train_char_tokenizer

    folder = tmp_path / "tokenizer"
    train_char_tokenizer([string.printable]).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "flags, detail",
    [
        (["--objective", "autoregressive"], "expected --objective diffusion"),
        (["--diffusion-block", "8"], "expected a whole-sequence model (no --diffusion-block)"),
    ],
)
def test_substitution_is_refused_for_models_it_cannot_train(
    tmp_path, corpus, capsys, flags, detail
):
    argv = ["train", "text", str(corpus), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    assert main([*argv, "--process", "substitution", *flags]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("diffuse: error: --process substitution with ")
    assert line.endswith(f", --process, {detail}")
