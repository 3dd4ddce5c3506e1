"""Small real data sets shipped inside ``diffuse``, so a fresh clone or a ``pip install`` can
train something without ``../shared/data``: 5,000 Fashion-MNIST images, 300 FSDD clips,
10 protein families x 100 sequences and Tiny Shakespeare. Each ``<domain>/`` folder holds the
data in the format its domain's adapters read, a SOURCE.md (origin, licence, what was selected
and how) and, where the licence asks for it, a LICENSE. ``apps/diffuse/scripts/
make_demo_data.py`` rebuilds them byte for byte from the full copies.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DOMAINS", "ROOT", "folder", "path"]

ROOT = Path(__file__).resolve().parent
# what `diffuse train <domain> --data` takes, relative to the domain's folder
_DATA = {
    "image": ".",  # train.parquet in the Hub layout (diffimage.load_images)
    "audio": ".",  # WAVs + metadata.csv: label, speaker, index (diffaudio.data.load_audio_folder)
    "protein": ".",  # one FASTA file per family (diffprotein.data.read_sequences)
    "text": "tinyshakespeare.txt",  # the file: the folder's SOURCE.md would be read as text too
}
DOMAINS = tuple(_DATA)


def folder(domain: str) -> Path:
    """The folder of ``domain``'s subset (its data, SOURCE.md and LICENSE)."""
    if domain not in _DATA:
        raise ValueError(f"no demo data for {domain!r}; the domains are {', '.join(DOMAINS)}")
    return ROOT / domain


def path(domain: str) -> Path:
    """What to load ``domain``'s subset from: the path ``diffuse train <domain> --data`` and
    the domain's loader take (a folder, or for text the file)."""
    return (folder(domain) / _DATA[domain]).resolve()
