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
