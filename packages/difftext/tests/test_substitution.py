"""Text models trained on substitution (wrong tokens instead of masks): the corruption writes
only tokens a sample may hold, the training loss is diffcore's ``SubstitutionProcess.loss``
with padding left out, the folder records the corruption (old folders load as masked models),
and the pipeline samples, infills and edits them with the "substitute" sampler."""

import json
import string

import pytest
import torch

from diffcore.generation import SubstituteOptions, TokenOptions, remask
from diffcore.training import TrainConfig
from difftext.data import Document, make_blocks
from difftext.model import META_NAME, TextModel, load_text_model, save_text_model
from difftext.pipeline import TextPipeline
from difftext.tokenizer import banned_ids
from difftext.training import build_model, fit, loss_function, validate


@pytest.fixture
def substitution_model(char_tokenizer) -> TextModel:
    return build_model("diffusion", char_tokenizer, 32, preset="tiny", corruption="substitution")


@pytest.fixture
def sub_pipe(substitution_model) -> TextPipeline:
    return TextPipeline(substitution_model)


def test_the_corruption_writes_only_tokens_a_sample_may_hold(substitution_model, char_tokenizer):
    replacement = substitution_model.substitution.replacement
    banned = banned_ids(char_tokenizer, generating=True)
    allowed = [i for i in range(len(char_tokenizer)) if i not in banned]
    assert char_tokenizer.mask_token_id in banned and char_tokenizer.pad_token_id in banned
    assert len(allowed) == len(string.printable) + 1  # the characters and EOS
    assert bool((replacement[:, banned] == 0).all())
    assert bool((replacement[:, allowed] == 1 / len(allowed)).all())
    assert build_model("diffusion", char_tokenizer, 32, preset="tiny").substitution is None


def test_the_training_loss_is_the_process_loss_without_the_padding(substitution_model):
    model, pad = substitution_model.model.eval(), substitution_model.tokenizer.pad_token_id
    tokens = torch.randint(10, 90, (3, 32), generator=torch.Generator().manual_seed(1))
    tokens[1, 20:] = pad  # a short document, padded
    counted = tokens != pad
    loss = loss_function(substitution_model)(model, tokens, torch.Generator().manual_seed(7))
    expected = substitution_model.substitution.loss(
        substitution_model.denoiser(),
        tokens,
        torch.Generator().manual_seed(7),
        loss_mask=counted,
        attention_mask=counted.long(),
    )
    assert torch.equal(loss, expected)
    unmasked = substitution_model.substitution.loss(
        substitution_model.denoiser(), tokens, torch.Generator().manual_seed(7)
    )
    assert not torch.allclose(loss, unmasked)  # the padding would change it
    with pytest.raises(ValueError, match="estimates the masked ELBO"):
        loss_function(substitution_model, estimator="time")


def test_substitution_is_refused_where_it_cannot_work(char_tokenizer, substitution_model):
    block = {"diffusion_block": 8, "corruption": "substitution"}
    with pytest.raises(ValueError, match="diffusion models, not of a block-diffusion model"):
        build_model("diffusion", char_tokenizer, 32, preset="tiny", **block)
    with pytest.raises(ValueError, match="not of an autoregressive model"):
        build_model("autoregressive", char_tokenizer, 32, preset="tiny", corruption="substitution")
    with pytest.raises(ValueError, match="corruption must be 'mask' or 'substitution'"):
        build_model("diffusion", char_tokenizer, 32, preset="tiny", corruption="uniform")
    blocks = make_blocks(char_tokenizer, [Document("to be or not to be " * 8, "x")], 32)
    with pytest.raises(ValueError, match="no likelihood bound"):
        validate(substitution_model, blocks, samples=1)


def test_the_folder_records_the_corruption_and_old_folders_load_as_masked(
    tmp_path, substitution_model, tiny_diffusion
):
    folder = save_text_model(substitution_model, tmp_path / "sub")
    assert json.loads((folder / META_NAME).read_text())["corruption"] == "substitution"
    loaded = load_text_model(folder)
    assert loaded.corruption == "substitution" and loaded.substitution is not None
    old = save_text_model(tiny_diffusion, tmp_path / "old")
    meta = json.loads((old / META_NAME).read_text())
    del meta["corruption"]  # as written before substitution models existed
    (old / META_NAME).write_text(json.dumps(meta))
    assert load_text_model(old).corruption == "mask"
    assert TextPipeline.from_pretrained(old).options_class is TokenOptions
    (old / META_NAME).write_text(json.dumps({**meta, "corruption": "blur"}))
    with pytest.raises(ValueError, match=r"difftext\.json: corruption must be"):
        load_text_model(old)


def test_generation_runs_the_network_on_rows_without_masks(sub_pipe, pipe):
    x = torch.randint(10, 90, (2, 32))
    fixed = {"fixed": torch.ones_like(x, dtype=torch.bool)}
    allowed = list(range(10, 90))  # characters: never banned
    logits = sub_pipe.denoiser(x, fixed, 1.0)(x)
    assert bool((logits[..., allowed] != 0).any(-1).all())  # every row went through the model
    assert not bool((pipe.denoiser(x, fixed, 1.0)(x)[..., allowed] != 0).any())  # masked: skipped


def test_a_substitution_model_samples_with_the_substitute_sampler(sub_pipe):
    assert sub_pipe.options_class is SubstituteOptions and sub_pipe.default_sampler == "substitute"
    prompts = ["ROMEO:", "", "To be, or [MASK*3] not"]
    one = sub_pipe.sample(3, prompt=prompts, length=24, steps=6, seed=2, batch_size=1)
    assert one == sub_pipe.sample(3, prompt=prompts, length=24, steps=6, seed=2, batch_size=8)
    assert one[0].startswith("ROMEO:") and one[2].startswith("To be, or ")
    assert all("[MASK]" not in t for t in one)
    confident = sub_pipe.sample(
        3, prompt=prompts, length=24, steps=6, seed=2, options={"resample": "confidence"}
    )
    assert confident != one and confident[0].startswith("ROMEO:")
    with pytest.raises(ValueError, match="substitution model samples with guidance 1"):
        sub_pipe.sample(1, prompt="ROMEO:", guidance=2.0)
    with pytest.raises(ValueError, match="takes no option 'confidence'"):
        sub_pipe.sample(1, options={"confidence": "entropy"})


def test_infilling_and_editing_keep_the_known_tokens(sub_pipe):
    (filled,) = sub_pipe.infill(["To be, or [MASK*4] to be"], steps=4, seed=1)
    assert filled.startswith("To be, or ") and filled.endswith(" to be")
    assert len(filled) == len("To be, or  to be") + 4 and "[MASK]" not in filled
    text = "To be, or not to be, that"
    (edited,) = sub_pipe.edit([text], strength=0.25, steps=4, seed=3)
    ids = torch.tensor(sub_pipe.tokenizer(text, add_special_tokens=False)["input_ids"])
    (masked,) = remask([ids], 0.25, sub_pipe.mask_id, seed=3)  # what edit regenerates
    kept = (masked != sub_pipe.mask_id).tolist()
    assert len(edited) == len(text) and sum(kept) == len(text) - round(0.25 * len(text))
    assert all(a == b for a, b, k in zip(edited, text, kept, strict=True) if k)


def test_fit_skips_the_likelihood_of_a_substitution_model(tmp_path, substitution_model):
    tok = substitution_model.tokenizer
    blocks = make_blocks(tok, [Document("to be or not to be, that is the question " * 6, "x")], 32)
    run = TrainConfig(steps=2, batch_size=4, lr=1e-2, ema_decay=None, log_every=1)
    result = fit(
        substitution_model, blocks, run, tmp_path, val_blocks=blocks, eval_every=1, progress=False
    )
    assert result.final is None and result.validation == []
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(
        set(r) == {"step", "loss_nats", "lr"} for r in rows
    )
    assert load_text_model(result.model_dir).corruption == "substitution"
