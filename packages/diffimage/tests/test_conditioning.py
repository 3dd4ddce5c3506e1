"""Labels with a null label for guidance dropout, and captions through a transformers encoder
loaded from a local folder (a tiny random BERT saved to a temporary directory)."""

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from diffcore.training import TrainConfig
from diffimage import ImagePipeline, TextEncoder, attach_captions, build_model, train_model
from diffimage.conditioning import parse_labels
from diffimage.data import from_arrays

WORDS = ["a", "red", "blue", "shoe", "coat", "bag", "striped", "plain"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def test_labels_parse_from_names_ids_and_all():
    names = ("T-shirt/top", "Trouser", "Bag")
    assert parse_labels("all", 5, names).tolist() == [0, 1, 2, 0, 1]
    assert parse_labels("Bag,0", 3, names).tolist() == [2, 0, 2]
    with pytest.raises(ValueError, match="unknown class 'Hat'"):
        parse_labels("Hat", 2, names)
    with pytest.raises(ValueError, match="out of range"):
        parse_labels("7", 2, names)


def test_a_local_text_encoder_embeds_captions(encoder_dir):
    encoder = TextEncoder(encoder_dir)
    out = encoder.encode(["a red shoe", "a blue striped coat", "a red shoe"])
    assert out.shape == (3, 16) and out.dtype == torch.float32
    assert torch.equal(out[0], out[2]) and not torch.equal(out[0], out[1])
    with pytest.raises(FileNotFoundError, match="not a saved transformers model"):
        TextEncoder(encoder_dir / "missing")


def test_a_captioned_model_trains_saves_its_encoder_and_samples_with_guidance(
    encoder_dir, tmp_path
):
    encoder = TextEncoder(encoder_dir)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=g)
    captions = ["a red shoe" if i % 2 else "a blue bag" for i in range(32)]
    data = attach_captions(from_arrays(images, captions=captions), encoder)
    model = build_model(
        "tiny", channels=1, image_size=(8, 8), context_dim=encoder.dim, text_encoder="text_encoder"
    )
    config = TrainConfig(steps=4, batch_size=16, log_every=2, checkpoint_every=4)
    result = train_model(
        model, data, config, out_dir=tmp_path / "run", text_encoder=encoder, progress=False
    )
    assert (result.final_model / "text_encoder" / "config.json").is_file()

    pipe = ImagePipeline.from_pretrained(result.final_model)
    asked = ["a red shoe", "a blue bag"]
    a = pipe.sample(2, captions=asked, guidance=3.0, steps=3, seed=0)
    assert torch.equal(a, pipe.sample(2, captions=asked, guidance=3.0, steps=3, seed=0))
    pipe.save_pretrained(tmp_path / "copy")
    again = ImagePipeline.from_pretrained(tmp_path / "copy")
    assert torch.equal(a, again.sample(2, captions=asked, guidance=3.0, steps=3, seed=0))
