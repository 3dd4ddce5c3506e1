"""`diffuse refine text`: another generator's texts, a share of each re-noised and redrawn."""

import json

import torch

from diffuse import demo_data
from diffuse.cli import main


def test_refine_text_redraws_about_the_strength_share_of_each_text(tmp_path, capsys):
    torch.set_num_threads(1)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(demo_data.path("text").read_text()[:20_000])
    run = tmp_path / "run"
    common = ["--preset", "tiny", "--block-size", "32", "--steps", "6", "--batch-size", "8"]
    common += ["--eval-every", "0"]
    assert main(["train", "text", str(corpus), "--out", str(run), *common]) == 0
    texts = ["First Citizen:\nBefore we proceed", "ROMEO:\nBut soft, what light"]
    source = tmp_path / "theirs.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "refined.jsonl"
    argv = ["refine", "text", "--model", str(run), "--input", str(source), "--steps", "4"]
    assert main([*argv, "--strength", "0.25", "--out", str(out)]) == 0
    refined = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert len(refined) == 2
    changed = []
    for before, after in zip(texts, refined, strict=True):
        assert len(after) == len(before)  # characters: one token each, redrawn in place
        changed.append(sum(a != b for a, b in zip(before, after, strict=True)))
        assert changed[-1] <= round(0.25 * len(before)) + 1  # only the re-noised share
    assert sum(changed) > 0  # a barely trained model redraws some of them differently
    sampling = json.loads(out.with_suffix(".run.json").read_text())["sampling"]
    assert sampling["steps"] == 4
    capsys.readouterr()
    assert main([*argv, "--strength", "0", "--out", str(out)]) == 2
    assert "--strength" in capsys.readouterr().err
    # without --strength: each text's own level, as the model's level predictor reads it
    assert main([*argv, "--out", str(out)]) == 2
    assert "train text-level" in capsys.readouterr().err
    level = ["train", "text-level", "--model", str(run), "--data", str(corpus), "--steps", "3"]
    assert main([*level, "--batch-size", "8", "--out", str(tmp_path / "level")]) == 0
    assert (run / "model" / "level" / "config.json").is_file()
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 0
    strengths = capsys.readouterr().err.split("strengths: ")[1].split()[0:2]
    assert all(0 < float(s.rstrip(",")) <= 1 for s in strengths)
    assert len(out.read_text().splitlines()) == 2


def test_a_token_level_net_learns_to_read_the_share_of_wrong_characters(tmp_path):
    """The text level predictor, trained briefly on real text, ranks texts by how many of
    their characters were replaced."""
    from diffcore.generation import predict_levels
    from diffcore.training import TrainConfig
    from difftext.data import Document, make_blocks
    from difftext.model import uniform_substitution
    from difftext.refine import train_level_predictor
    from difftext.tokenizer import train_char_tokenizer
    from difftext.training import build_model

    torch.set_num_threads(1)
    text = demo_data.path("text").read_text()[:60_000]
    tokenizer = train_char_tokenizer([text])
    model = build_model("diffusion", tokenizer, 64, preset="tiny")
    blocks = make_blocks(tokenizer, [Document(text, "demo")], 64)
    config = TrainConfig(steps=200, batch_size=32, lr=3e-3, ema_decay=None, log_every=100)
    result = train_level_predictor(model, blocks, config, out_dir=tmp_path, progress=False)
    from difftext.refine import load_level_predictor

    predictor = load_level_predictor(result.final_model)
    t = torch.linspace(0.05, 0.95, 32, dtype=torch.float64)
    noisy = uniform_substitution(model).corrupt(
        blocks.tokens[:32], t, torch.Generator().manual_seed(0)
    )
    read = predict_levels(predictor, noisy)
    assert float((read - t.float()).abs().mean()) < 0.1
