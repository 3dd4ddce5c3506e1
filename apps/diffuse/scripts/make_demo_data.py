"""Rebuild the small data sets shipped inside ``diffuse`` (``diffuse.demo_data``) from the full
copies in ``../shared/data``: a seeded, balanced selection per domain, copied byte for byte
(PNG bytes, WAV files, FASTA records, text), plus each subset's SOURCE.md and LICENSE.

    uv run python apps/diffuse/scripts/make_demo_data.py            # writes the package's copy
    uv run python apps/diffuse/scripts/make_demo_data.py --out /tmp/demo_data  # to audit it

The same sources, seed and library versions give the same bytes (a test checks it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT.parent / "shared" / "data"
OUT = ROOT / "apps" / "diffuse" / "src" / "diffuse" / "demo_data"
COMMAND = "uv run python apps/diffuse/scripts/make_demo_data.py"
SEED = 0
IMAGES_PER_CLASS = 500  # 10 classes: 5,000 Fashion-MNIST training images
CLIPS_PER_DIGIT_SPEAKER = (1, 4)  # FSDD: from indices 0-4 (its test split), from 5-49 (train)
SEQUENCES_PER_FAMILY = 100

MIT = """Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

# copyright lines of the protein families' source repositories (their LICENSE files)
PROTEIN_LICENSES = {
    "pagnani/ArDCAData (kunitz, pdz, beta_lactamase)": (
        "MIT License, as recorded in ../shared/data/proteins/README.md; the repository's own\n"
        "LICENSE file (and so its copyright line) was not available when this subset was made."
    ),
    "pagnani/AttentionDCA.jl (dsrbd, dnaj_cxxcxgxg, lumazine_binding, thf_dhg_cyh)": (
        "MIT License\nCopyright (c) 2022 Francesco Caredda, Andrea Pagnani,  Politecnico di Torino"
    ),
    "anna-pa-m/adabmDCA (sh3)": (
        "MIT License\nCopyright (c) 2021 Anna Paola Muntoni, Francesco Zamponi"
    ),
    "debbiemarkslab/plmc (dhfr)": "MIT License\nCopyright (c) 2017 debbiemarkslab",
    "spqb/adabmDCApy (chorismate_mutase)": "MIT License\nCopyright (c) 2024 SPQB",
}


# where each family file came from (../shared/data/proteins/README.md): repository, path, commit
FAMILY_SOURCES = {
    "kunitz": (
        "pagnani/ArDCAData",
        "data/PF00014/PF00014_mgap6.fasta.gz",
        "bfd54c6c4f9f8b2f14b6788ed1feca66b37c4ce8",
    ),
    "pdz": (
        "pagnani/ArDCAData",
        "data/PF00595/PF00595_mgap6.fasta.gz",
        "bfd54c6c4f9f8b2f14b6788ed1feca66b37c4ce8",
    ),
    "beta_lactamase": (
        "pagnani/ArDCAData",
        "data/PF13354/PF13354_wo_ref_seqs.fasta.gz",
        "bfd54c6c4f9f8b2f14b6788ed1feca66b37c4ce8",
    ),
    "sh3": ("anna-pa-m/adabmDCA", "test/PF00018.fasta", "e7ad1b45a94ff0e76cb8842779f72f2cff7b9280"),
    "dsrbd": (
        "pagnani/AttentionDCA.jl",
        "PFs/PF00035/PF00035_full.fasta",
        "967b0c304deb2ab0493b75d91c9adf6430c8b61e",
    ),
    "dnaj_cxxcxgxg": (
        "pagnani/AttentionDCA.jl",
        "PFs/PF00684/PF00684_full.fasta",
        "967b0c304deb2ab0493b75d91c9adf6430c8b61e",
    ),
    "lumazine_binding": (
        "pagnani/AttentionDCA.jl",
        "PFs/PF00677/PF00677_full.fasta",
        "967b0c304deb2ab0493b75d91c9adf6430c8b61e",
    ),
    "thf_dhg_cyh": (
        "pagnani/AttentionDCA.jl",
        "PFs/PF00763/PF00763_full.fasta",
        "967b0c304deb2ab0493b75d91c9adf6430c8b61e",
    ),
    "dhfr": (
        "debbiemarkslab/plmc",
        "example/protein/DHFR.a2m",
        "18c9e55e3bd2f14f4968be19a807b401996c929a",
    ),
    "chorismate_mutase": (
        "spqb/adabmDCApy",
        "example_data/CM_130530_MC.fasta",
        "85ad50b2750e36fec4665cb2067ea817dd61a34c",
    ),
}


def _fresh(folder: Path) -> Path:
    """An empty ``folder`` (a shrunk subset leaves no stale files behind)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def _source_md(title: str, *sections: str) -> str:
    made = f"## How it was made\n\n```bash\n{COMMAND}\n```\n\nfrom `../shared/data` (seed {SEED})."
    return f"# {title}\n\n" + "\n\n".join((*sections, made)) + "\n"


def make_images(source: Path, out: Path) -> None:
    """``IMAGES_PER_CLASS`` training images of each Fashion-MNIST class, in the source's
    (shuffled) row order, as one parquet file in the Hub layout; ``source_row`` says where
    each came from."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source / "fashion_mnist" / "train.parquet")
    labels = table.column("label").to_pylist()
    rng = random.Random(SEED)
    rows: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        rows += rng.sample(members, IMAGES_PER_CLASS)
    rows.sort()
    subset = table.take(pa.array(rows)).append_column("source_row", pa.array(rows, pa.int64()))
    meta = json.loads(table.schema.metadata[b"huggingface"])
    meta["info"]["features"]["source_row"] = {"dtype": "int64", "_type": "Value"}
    subset = subset.replace_schema_metadata({"huggingface": json.dumps(meta)})
    pq.write_table(subset, out / "train.parquet", compression="none", row_group_size=len(rows))
    names = meta["info"]["features"]["label"]["names"]
    _write(
        out / "LICENSE",
        "The MIT License (MIT) Copyright © 2017 Zalando SE, https://tech.zalando.com\n\n" + MIT,
    )
    _write(
        out / "SOURCE.md",
        _source_md(
            "Fashion-MNIST subset (images)",
            "Fashion-MNIST: Han Xiao, Kashif Rasul, Roland Vollgraf, *Fashion-MNIST: a Novel "
            "Image Dataset for Benchmarking Machine Learning Algorithms*, arXiv:1708.07747 "
            "(2017); https://github.com/zalandoresearch/fashion-mnist. This copy comes from the "
            "PNG release in the public repository Sentdex/nnfs_book (folder "
            "fashion_mnist_images), as held in `../shared/data/fashion_mnist/train.parquet`.",
            "**Licence:** MIT, © 2017 Zalando SE (full text in `LICENSE`).",
            f"**What:** {len(rows):,} of the 60,000 training images, {IMAGES_PER_CLASS} per "
            f"class ({', '.join(names)}), drawn at random (seed {SEED}) and kept in the source's "
            "row order. `train.parquet` has the Hugging Face Hub layout: `image` ({bytes: PNG, "
            "path}), the PNG bytes unchanged; `label` (ClassLabel with the 10 names); "
            "`source_row` (the row in the full train.parquet).",
        ),
    )


def make_audio(source: Path, out: Path) -> None:
    """5 FSDD clips for every (digit, speaker): 1 of indices 0-4 (the conventional test
    split) and 4 of 5-49, copied unchanged; ``metadata.csv`` gives each clip's fields."""
    recordings = source / "fsdd" / "recordings"
    fields = [p.stem.split("_") + [p.name] for p in sorted(recordings.glob("*.wav"))]
    rng = random.Random(SEED)
    chosen = []
    n_test, n_train = CLIPS_PER_DIGIT_SPEAKER
    for digit, speaker in sorted({(f[0], f[1]) for f in fields}):
        indices = sorted(int(f[2]) for f in fields if f[0] == digit and f[1] == speaker)
        test = rng.sample([i for i in indices if i < 5], n_test)
        train = rng.sample([i for i in indices if i >= 5], n_train)
        chosen += [(digit, speaker, i) for i in sorted(test + train)]
    rows = []
    for digit, speaker, index in chosen:
        name = f"{digit}_{speaker}_{index}.wav"
        shutil.copyfile(recordings / name, out / name)
        rows.append({"file_name": name, "label": digit, "speaker": speaker, "index": index})
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (out / "metadata.csv").write_bytes(buffer.getvalue().encode())
    speakers = sorted({s for _, s, _ in chosen})
    _write(
        out / "LICENSE",
        "Free Spoken Digit Dataset (FSDD), https://github.com/Jakobovski/free-spoken-digit-dataset\n"
        "by its contributors, licensed under Creative Commons Attribution-ShareAlike 4.0\n"
        "International (CC BY-SA 4.0): https://creativecommons.org/licenses/by-sa/4.0/\n"
        "(legal code: https://creativecommons.org/licenses/by-sa/4.0/legalcode).\n\n"
        "Changes: a subset of the recordings was selected; the files are unchanged. This subset\n"
        "(the WAV files and metadata.csv in this folder) is shared under the same licence.\n",
    )
    _write(
        out / "SOURCE.md",
        _source_md(
            "Free Spoken Digit Dataset subset (audio)",
            "Free Spoken Digit Dataset (FSDD), public repository "
            "https://github.com/Jakobovski/free-spoken-digit-dataset: recordings of the digits "
            "0-9 spoken in English, mono 8 kHz 16-bit WAV, named `{digit}_{speaker}_{index}.wav`.",
            "**Licence:** CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). "
            "Attribution: the Free Spoken Digit Dataset and its contributors. Changes: selection "
            "only (files unchanged). ShareAlike: this subset is under CC BY-SA 4.0 too. See "
            "`LICENSE`.",
            f"**What:** {len(chosen)} of the 3,000 recordings: for every digit and speaker "
            f"({', '.join(speakers)}), {n_test} drawn at random from indices 0-4 (FSDD's test "
            f"split) and {n_train} from 5-49 (seed {SEED}), so `--split-field index --held-out "
            "0,1,2,3,4` holds out 60 clips and trains on 240. `metadata.csv` (the audiofolder "
            "convention: `file_name`, `label`, `speaker`, `index`) labels each file.",
        ),
    )


def _fasta_records(path: Path) -> list[str]:
    """The records of a FASTA file as their exact text (header line and sequence lines)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith(">"):
        raise ValueError(f"{path}: not a FASTA file (the first record must start with '>')")
    first, *rest = text.rstrip("\n").split("\n>")
    return [first] + [">" + chunk for chunk in rest]


def make_proteins(source: Path, out: Path) -> None:
    """``SEQUENCES_PER_FAMILY`` records of each family file, in file order, unchanged."""
    rng = random.Random(SEED)
    families = sorted((source / "proteins" / "families").glob("*.fasta"))
    for path in families:
        records = _fasta_records(path)
        keep = sorted(rng.sample(range(len(records)), SEQUENCES_PER_FAMILY))
        text = "\n".join(records[i] for i in keep) + "\n"
        _write(out / path.name, text)
    licenses = "\n\n".join(f"{repo}:\n{line}" for repo, line in PROTEIN_LICENSES.items())
    _write(
        out / "LICENSE",
        "The family files were selected from FASTA alignments in these MIT-licensed "
        "repositories:\n\n"
        + licenses
        + "\n\nThe MIT License's terms, for each of them:\n\n"
        + MIT
        + "\nThe sequences themselves come from UniProtKB (CC BY 4.0, "
        "https://creativecommons.org/licenses/by/4.0/;\nattribution: the UniProt Consortium) and "
        "Pfam (CC0) families.\n",
    )
    table = "\n".join(
        f"| `{p.name}` | https://github.com/{repo} | `{path}` | {commit[:12]} |"
        for p in families
        for repo, path, commit in [FAMILY_SOURCES[p.stem]]
    )
    _write(
        out / "SOURCE.md",
        _source_md(
            "Protein family subset (protein)",
            "Natural protein domain sequences grouped by Pfam family, as held in "
            "`../shared/data/proteins/families/` (see its README.md): gap-free, uppercase FASTA "
            "built from public alignments (UniProt sequences aligned to Pfam HMMs, used in DCA "
            "benchmarks). Cite Pfam, ArDCA (Trinquier et al. 2021), adabmDCA (Muntoni et al. "
            "2021) and plmc / EVcouplings when publishing.\n\n"
            "| file | repository | path | commit |\n| --- | --- | --- | --- |\n" + table,
            "**Licence:** MIT (the source repositories; copyright lines and terms in `LICENSE`); "
            "the underlying UniProtKB data CC BY 4.0, Pfam CC0.",
            f"**What:** {SEQUENCES_PER_FAMILY} sequences of each of the {len(families)} "
            f"families, drawn at random (seed {SEED}) and kept in file order, records copied "
            "unchanged (original headers, lines of 80 residues). The file name is the family "
            "label.",
        ),
    )


def make_text(source: Path, out: Path) -> None:
    """Tiny Shakespeare, whole (1.1 MB)."""
    shutil.copyfile(source / "tinyshakespeare" / "input.txt", out / "tinyshakespeare.txt")
    chars = len((out / "tinyshakespeare.txt").read_text(encoding="utf-8"))
    _write(
        out / "SOURCE.md",
        _source_md(
            "Tiny Shakespeare (text)",
            "Tiny Shakespeare, from the public repository karpathy/char-rnn "
            "(https://github.com/karpathy/char-rnn, `data/tinyshakespeare/input.txt`): "
            "passages of Shakespeare's plays.",
            "**Licence:** public domain (the text of Shakespeare's plays).",
            f"**What:** the whole file, unchanged ({chars:,} characters, UTF-8) as "
            "`tinyshakespeare.txt`. The usual split: first 90% of characters train, last 10% "
            "validation (`diffuse train text`'s default `--val-fraction 0.1`).",
        ),
    )


MAKERS = {"image": make_images, "audio": make_audio, "protein": make_proteins, "text": make_text}


def make_all(
    source: Path = SOURCE, out: Path = OUT, domains: tuple[str, ...] = tuple(MAKERS)
) -> None:
    """Write each domain's subset to ``out/<domain>/`` (replacing what was there)."""
    for domain in domains:
        MAKERS[domain](Path(source), _fresh(Path(out) / domain))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="the full data sets")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for <domain>/ subsets")
    parser.add_argument("--domains", default=",".join(MAKERS), help="comma-separated")
    args = parser.parse_args()
    if not args.source.is_dir():
        parser.error(f"{args.source}: no such folder (the full data sets, ../shared/data)")
    make_all(args.source, args.out, tuple(args.domains.split(",")))
    for domain in args.domains.split(","):
        size = sum(p.stat().st_size for p in (args.out / domain).iterdir())
        print(f"{domain:8s} {size:>10,} bytes  {args.out / domain}")


if __name__ == "__main__":
    main()
