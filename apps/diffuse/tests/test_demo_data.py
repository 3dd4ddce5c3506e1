"""The data sets shipped inside `diffuse` (diffuse.demo_data): each loads through the loader its
`diffuse train <domain>` command uses, balanced over its classes; all together stay under 8 MB,
say where they come from and under which licence, and the script rebuilds them byte for byte."""

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from diffuse import demo_data
from diffuse.cli import build_parser
from diffuse.commands import audio, image, protein

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_demo_data.py"
MAX_BYTES = 8_000_000
LICENCES = {
    "image": "MIT",
    "audio": "CC BY-SA 4.0",
    "protein": "MIT",
    "text": "public domain",
}


def parse(*argv: str):
    return build_parser().parse_args([*argv, "--out", "unused"])


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_images_load_through_the_image_command_balanced_over_the_ten_classes():
    data = image.load_data(parse("train", "image", "--data", str(demo_data.path("image"))))
    assert len(data) == 5000 and data.size == (28, 28) and data.channels == 1
    assert data.class_names[0] == "T-shirt/top" and len(data.class_names) == 10
    assert Counter(data.labels.tolist()) == dict.fromkeys(range(10), 500)
    assert data.images.float().std() > 50  # real pictures, not blank PNGs


def test_audio_loads_through_the_audio_command_balanced_over_digits_and_speakers(capsys):
    folder = str(demo_data.path("audio"))
    split = ("--split-field", "index")
    spectrogram, train = audio.load(parse("train", "audio", "--data", folder, *split))
    _, test = audio.load(parse("train", "audio", "--data", folder, *split, "--use", "test"))
    assert (len(train), len(test)) == (240, 60)  # FSDD's own split: indices 0-4 held out
    assert train.sample_rate == 8000 and train.waves.shape[1] == spectrogram.num_samples
    for clips, per_digit in ((train, 24), (test, 6)):
        digits = Counter(clips.label_names[i] for i in clips.labels.tolist())
        assert digits == dict.fromkeys("0123456789", per_digit)
        assert Counter(clips.speakers.tolist()) == dict.fromkeys(range(6), per_digit * 10 // 6)
    assert all(train.waves.abs().amax(1) > 0.01)  # every clip has sound
    assert "240 clips" in capsys.readouterr().out


def test_proteins_read_through_the_protein_command_as_ten_families_of_100():
    args = parse("train", "protein", str(demo_data.path("protein")))
    data = protein._read(args.data, args)
    assert len(data) == 1000 and not data.skipped
    assert Counter(r.family for r in data.records) == dict.fromkeys(data.families, 100)
    assert {"kunitz", "sh3", "dhfr", "chorismate_mutase"} <= set(data.families)
    assert len(data.families) == 10
    assert len({r.sequence for r in data.records}) == 1000  # the source files hold no duplicates


def test_text_loads_through_the_text_command_options_as_tiny_shakespeare():
    from difftext.data import load_splits

    args = parse("train", "text", str(demo_data.path("text")))
    options = {"text_column": args.text_column, "sample_by": args.sample_by}
    train, val = load_splits(args.data, args.val_data, val_fraction=args.val_fraction, **options)
    text = "".join(d.text for d in train + val)
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    assert len("".join(d.text for d in val)) == round(0.1 * len(text))


def test_all_subsets_together_stay_under_8_mb():
    total = sum(p.stat().st_size for p in demo_data.ROOT.rglob("*") if p.is_file())
    assert total <= MAX_BYTES, f"demo data holds {total:,} bytes; the budget is 8 MB"


@pytest.mark.parametrize("domain", demo_data.DOMAINS)
def test_every_subset_names_its_source_and_licence(domain):
    source = (demo_data.folder(domain) / "SOURCE.md").read_text()
    assert f"**Licence:** {LICENCES[domain]}" in source
    assert "make_demo_data.py" in source and "https://github.com/" in source
    if LICENCES[domain] != "public domain":  # MIT and CC BY-SA ask for the notice with copies
        assert LICENCES[domain].split()[0] in (demo_data.folder(domain) / "LICENSE").read_text()


def test_path_refuses_an_unknown_domain():
    with pytest.raises(ValueError, match="no demo data for 'video'.*image, audio, protein, text"):
        demo_data.path("video")


def test_the_script_rebuilds_every_subset_byte_for_byte(shared_data, tmp_path):
    spec = importlib.util.spec_from_file_location("make_demo_data", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.make_all(shared_data, tmp_path)
    for domain in demo_data.DOMAINS:
        rebuilt, shipped = files(tmp_path / domain), files(demo_data.folder(domain))
        assert sorted(rebuilt) == sorted(shipped), domain
        changed = [name for name in shipped if rebuilt[name] != shipped[name]]
        assert not changed, f"{domain}: {changed} differ from what the script makes"
