"""Every user error of `diffuse` is one line on stderr, `diffuse: error: <what>, <where>, <what was
expected>`, with exit status 2 for a bad command line and 1 for bad files; a traceback only with
--debug. Each case runs `diffuse.cli.main` in this process (a process each would cost 4 s of
imports per case); a few cases run the command in its own process, as a person would, to show
that nothing else reaches stderr there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from diffuse.cli import build_parser, main
from diffuse.kit import SAMPLERS

DOMAINS = ("image", "audio", "text", "protein")
OTHER = {"image": "protein", "audio": "image", "text": "audio", "protein": "text"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny saved model and a small data folder of each domain, saved by the packages' own
    functions; "weights-only": a model folder whose config.json is missing."""
    from diffaudio.model import AudioUNet, audio_unet_config
    from diffaudio.spectrogram import spectrogram_config
    from diffcore.io import save_pretrained
    from diffimage.model import build_model as image_model
    from diffprotein.model import ProteinDenoiser, ProteinDenoiserConfig, load_preset
    from difftext.model import save_text_model
    from difftext.tokenizer import train_char_tokenizer
    from difftext.training import build_model as text_model

    root = tmp_path_factory.mktemp("folders")
    models = {
        "image": image_model("tiny", channels=1, image_size=(8, 8)),
        "audio": AudioUNet(audio_unet_config("tiny", spectrogram_config(8000, 0.2))),
        "protein": ProteinDenoiser(ProteinDenoiserConfig(**load_preset("tiny"))),
    }
    for domain, model in models.items():
        save_pretrained(model, root / domain / "model")
    tokenizer = train_char_tokenizer(["to be or not to be"])
    save_text_model(text_model("diffusion", tokenizer, 16, preset="tiny"), root / "text" / "model")
    for domain, name in {"image": "a.png", "audio": "a_b_0.wav", "text": "a.txt"}.items():
        (root / domain / "data").mkdir()
        (root / domain / "data" / name).write_bytes(b"data")
    (root / "protein" / "data").mkdir()
    (root / "protein" / "data" / "kunitz.fasta").write_text(">k\nRPDFCLEPPYTG\n")
    (root / "weights-only").mkdir()
    shutil.copy(root / "image" / "model" / "model.safetensors", root / "weights-only")
    return root


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diffuse.cli", *argv], capture_output=True, text=True, timeout=120
    )


def sample(domain: str, model: str, out: str, *extra: str) -> list[str]:
    return ["sample", domain, "--model", model, "--out", out, *extra]


# (case, status, argv for a domain: (domain, folders, out) -> argv, what the line must name)
CASES = {
    "missing path": (1, lambda d, f, o: sample(d, f"{f}/nowhere", o), "does not exist"),
    "folder of the wrong kind": (1, lambda d, f, o: sample(d, f"{f}/{d}/data", o), "data folder"),
    "model of another domain": (
        1, lambda d, f, o: sample(d, f"{f}/{OTHER[d]}/model", o), "model folder, --model"
    ),
    "no config.json": (1, lambda d, f, o: sample(d, f"{f}/weights-only", o), "no config.json"),
    "--steps 0": (2, lambda d, f, o: sample(d, f"{f}/{d}/model", o, "--steps", "0"), "--steps"),
    "--n 0": (2, lambda d, f, o: sample(d, f"{f}/{d}/model", o, "--n", "0"), "--n, expected"),
    "--guidance nan": (
        2, lambda d, f, o: sample(d, f"{f}/{d}/model", o, "--guidance", "nan"), "finite number"
    ),
    "unknown sampler": (
        2, lambda d, f, o: sample(d, f"{f}/{d}/model", o, "--sampler", "nope"), "one of:"
    ),
    "missing training data": (
        1,
        lambda d, f, o: ["train", d, *(["--data"] if d in ("image", "audio") else []),
                         f"{f}/nowhere", "--out", o],
        "does not exist",
    ),
}  # fmt: skip


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("case", CASES)
def test_each_user_error_is_one_line_naming_what_where_and_what_was_expected(
    folders, tmp_path, domain, case, capsys
):
    status, argv, named = CASES[case]
    returned = main(argv(domain, str(folders), str(tmp_path / "out")))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffuse: error: "), err
    assert "Traceback" not in err and named in lines[0]
    assert returned == status
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("domain", DOMAINS)
def test_in_its_own_process_the_error_is_still_the_only_line(folders, tmp_path, domain):
    status, argv, named = CASES["--steps 0"]
    done = run(*argv(domain, str(folders), str(tmp_path / "out")))
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffuse: error: "), done.stderr
    assert named in lines[0] and done.returncode == status


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--strength", "1.5", "a number in (0, 1]"),
        ("--label-dropout", "1", "a number in [0, 1)"),
        ("--lr", "inf", "a finite number > 0"),
        ("--temperature", "-1", "a finite number >= 0"),
    ],
)
def test_numeric_options_are_checked_at_the_command_line(option, value, expected, capsys):
    command = {
        "--strength": ["edit", "image", "--model", "m", "--input", "x"],
        "--label-dropout": ["train", "image", "--data", "d"],
        "--lr": ["train", "image", "--data", "d"],
        "--temperature": ["sample", "text", "--model", "m"],
    }[option]
    assert main([*command, "--out", "o", option, value]) == 2
    assert f"'{value}' is not allowed, {option}, expected {expected}" in capsys.readouterr().err


def test_the_model_of_another_domain_is_named_with_what_was_expected(folders, tmp_path):
    done = run(*sample("image", str(folders / "protein" / "model"), str(tmp_path)))
    assert done.stderr.strip().endswith(
        "model is a protein model folder, --model, expected an image model folder "
        "(config.json of ImageDiffusion)"
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_before_the_line(folders, tmp_path, where):
    argv = sample("image", str(folders / "nowhere"), str(tmp_path))
    done = run(*(["--debug", *argv] if where == "before" else [*argv, "--debug"]))
    assert "Traceback (most recent call last)" in done.stderr and done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("diffuse: error: ")


def test_argparse_errors_have_no_usage_block_and_name_the_command(capsys):
    assert main(["sample", "image", "--out", "x"]) == 2  # no --model
    err = capsys.readouterr().err
    assert err == (
        "diffuse: error: --model not given, diffuse sample image, expected --model "
        "(see `diffuse sample image --help`)\n"
    )
    assert main(["sample", "image", "--model", "m", "--out", "x", "--bogus"]) == 2
    assert "unknown arguments --bogus, diffuse sample image" in capsys.readouterr().err


def test_help_shows_defaults_and_no_measured_numbers():
    parser = build_parser()
    measured = re.compile(r"\d\s*(x|%|s|ms|min)\b|\d+\.\d+x")
    for verb in parser._subparsers._group_actions[0].choices.values():
        for action in verb._actions:
            for command in getattr(action, "choices", None) or {}:
                text = action.choices[command].format_help()
                assert "(default:" in text, command
                helps = " ".join(a.help or "" for a in action.choices[command]._actions)
                assert not measured.search(helps), (command, measured.search(helps))


def test_the_sampler_names_are_diffcores():
    from diffcore import samplers
    from diffcore.generation import REFINE_SAMPLERS, SUBSTITUTE_SAMPLERS

    registries = {
        "continuous": samplers.SAMPLERS,
        "token": samplers.DISCRETE_SAMPLERS,
        "refine": REFINE_SAMPLERS,
        "substitute": SUBSTITUTE_SAMPLERS,
    }
    assert {family: tuple(names) for family, names in registries.items()} == SAMPLERS


def test_the_crappifier_names_are_the_domains():
    from diffaudio.model import CRAPPIFIERS as AUDIO
    from diffimage.model import CRAPPIFIERS as IMAGE
    from diffuse.commands import audio, image

    assert (image.CRAPPIFIERS, audio.CRAPPIFIERS) == (IMAGE, AUDIO)
