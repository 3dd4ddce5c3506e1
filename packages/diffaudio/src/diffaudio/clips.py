"""Fixed-length mono clips: :class:`AudioClips` and what every audio adapter shares to make
them (decode, check, fit the length). The adapters themselves: ``diffaudio.data`` (files and
folders) and ``diffaudio.hf`` (Hugging Face datasets); the policies are described there.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import soundfile
import torch
import torchaudio
from torch import Tensor
from tqdm.auto import tqdm

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
OnError = Literal["raise", "skip"]
RATES = (1_000, 768_000)  # Hz: the sample rates a recording may plausibly have


@dataclass(frozen=True)
class ClipChecks:
    """What a clip must satisfy to be used."""

    min_seconds: float = 0.05  # shorter clips are refused (after resampling)
    silence_db: float = -60.0  # clips whose peak is below this many dBFS are refused as silent


def read_audio(source: str | Path | bytes, sample_rate: int, *, name: str | None = None) -> Tensor:
    """Decode one file (a path, or the file's bytes) to a mono float32 waveform (L,) at
    ``sample_rate``. ``name`` is used in error messages (default: the path)."""
    name = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    data, rate = _decode(source, name)
    wave = torch.as_tensor(data, dtype=torch.float32).contiguous()
    if wave.ndim == 2:  # (frames, channels) -> mono
        wave = wave.mean(dim=1)
    return to_rate(wave, rate, sample_rate, name, what="the file")


def to_rate(wave: Tensor, rate: int, sample_rate: int, name: str, *, what: str = "it") -> Tensor:
    """A decoded mono waveform (L,) at ``rate`` -> (L',) at ``sample_rate``, or a ValueError
    naming ``name`` when it is empty, not finite or at a rate no recording has."""
    if wave.numel() == 0:
        raise ValueError(f"{name}: {what} holds no samples (empty audio)")
    if not torch.isfinite(wave).all():
        raise ValueError(f"{name}: the audio contains NaN or infinite samples")
    if not RATES[0] <= rate <= RATES[1]:
        raise ValueError(f"{name}: sample rate {rate} Hz; expected {RATES[0]} to {RATES[1]} Hz")
    if rate == sample_rate:
        return wave
    common = math.gcd(rate, sample_rate)
    if (rate // common) * (sample_rate // common) <= 1_000_000:
        return torchaudio.functional.resample(wave, rate, sample_rate)
    # torchaudio's kernel holds (rate / gcd) x (sample_rate / gcd) taps: gigabytes for rates
    # with a small common divisor (44101 Hz -> 8 kHz); soxr's resampler has no such cost.
    import librosa

    out = librosa.resample(wave.numpy(), orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return torch.from_numpy(out).float()


def _decode(source: str | Path | bytes, name: str) -> tuple[Any, int]:
    """(samples as a numpy array (L,) or (L, channels), sample rate)."""
    target = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        return soundfile.read(target, dtype="float32", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        first = err
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ValueError(f"{name}: no such file")
    # libsndfile's verdict on its own formats is final; librosa (through audioread) gets a
    # second try at the others, e.g. mp3 where libsndfile was built without it.
    if isinstance(source, bytes) or Path(source).suffix.lower() in (".wav", ".flac", ".ogg"):
        raise ValueError(
            f"{name}: not a readable audio file ({first}); expected one of "
            f"{', '.join(AUDIO_EXTENSIONS)}"
        )
    try:
        import librosa

        data, rate = librosa.load(str(source), sr=None, mono=False)
    except Exception as err:
        raise ValueError(f"{name}: not a readable audio file ({first}; {err})") from None
    return (data.T if data.ndim == 2 else data), int(rate)


def check_clip(wave: Tensor, sample_rate: int, name: str, checks: ClipChecks) -> None:
    """Raise a ValueError naming ``name`` if the clip is too short or silent."""
    seconds = wave.shape[-1] / sample_rate
    if seconds < checks.min_seconds:
        raise ValueError(
            f"{name}: {seconds:.3f} s long, shorter than the {checks.min_seconds} s minimum"
        )
    peak = float(wave.abs().max())
    peak_db = 20 * math.log10(max(peak, 1e-12))
    if peak_db < checks.silence_db:
        raise ValueError(
            f"{name}: silent (peak {peak_db:.1f} dBFS, below the {checks.silence_db} dBFS "
            "threshold)"
        )


def fit_length(wave: Tensor, num_samples: int, *, hop: int = 1) -> Tensor:
    """The module's length policy: pad (L,) with zeros at the end, or cut it to the loudest
    window of ``num_samples`` (window starts on multiples of ``hop``). Returns (num_samples,)."""
    length = wave.shape[-1]
    if length <= num_samples:
        return torch.nn.functional.pad(wave, (0, num_samples - length))
    energy = torch.cat([wave.new_zeros(1), (wave.double() ** 2).cumsum(0)])
    starts = torch.arange(0, length - num_samples + 1, hop)
    best = int(starts[(energy[starts + num_samples] - energy[starts]).argmax()])
    return wave[best : best + num_samples]


@dataclass(frozen=True)
class AudioClips:
    """Fixed-length mono clips and their conditioning.

    waves: (N, L) float32 at ``sample_rate``; labels / speakers: (N,) long indices into
    ``label_names`` / ``speaker_names``, or None when absent; sources: where each clip came from
    (path or ``row i``); fields: the metadata of each clip (file-name fields, metadata columns);
    skipped: ``"source: reason"`` for each clip left out under ``on_error="skip"``.
    """

    waves: Tensor
    sample_rate: int
    labels: Tensor | None = None
    speakers: Tensor | None = None
    label_names: tuple[str, ...] = ()
    speaker_names: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    fields: tuple[dict[str, str], ...] = ()
    skipped: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return self.waves.shape[0]

    def subset(self, indices: Sequence[int] | Tensor) -> AudioClips:
        """The clips at ``indices``, same names (so label ids keep their meaning)."""
        idx = torch.as_tensor(list(indices) if not isinstance(indices, Tensor) else indices)
        idx = idx.long()
        pick = lambda t: None if t is None else t[idx]
        rows = idx.tolist()
        return replace(
            self,
            waves=self.waves[idx],
            labels=pick(self.labels),
            speakers=pick(self.speakers),
            sources=tuple(self.sources[i] for i in rows) if self.sources else (),
            fields=tuple(self.fields[i] for i in rows) if self.fields else (),
        )

    def split_by_field(self, name: str, values: Iterable[Any]) -> tuple[AudioClips, AudioClips]:
        """(clips whose field ``name`` is one of ``values``, the rest). Values compare as
        strings, so ``range(5)`` matches ``"0"``..``"4"`` (FSDD's test split on ``index``)."""
        wanted = {str(v) for v in values}
        missing = [s for s, f in zip(self.sources, self.fields, strict=True) if name not in f]
        if missing or not self.fields:
            raise ValueError(
                f"cannot split on field {name!r}: {missing[0] if missing else 'the clips'} "
                f"{'has' if missing else 'have'} no such field"
            )
        inside = [i for i, f in enumerate(self.fields) if str(f[name]) in wanted]
        outside = [i for i, f in enumerate(self.fields) if str(f[name]) not in wanted]
        return self.subset(inside), self.subset(outside)


def _name_sort_key(name: str) -> tuple:
    """Numbers in numeric order first ("2" < "10"), then other names alphabetically."""
    return (0, float(name), name) if re.fullmatch(r"-?\d+(\.\d+)?", name) else (1, 0.0, name)


def _index(
    values: list[str | None], sources: list[str], what: str, names: Sequence[str] | None
) -> tuple[Tensor | None, tuple[str, ...]]:
    """Map per-clip names to ids. All None -> no conditioning; some None -> error."""
    if all(v is None for v in values):
        return None, ()
    for value, source in zip(values, sources, strict=True):
        if value is None:
            raise ValueError(f"{source}: has no {what}, while other clips have one")
    known = tuple(names) if names else tuple(sorted(set(values), key=_name_sort_key))
    lookup = {n: i for i, n in enumerate(known)}
    for value, source in zip(values, sources, strict=True):
        if value not in lookup:
            raise ValueError(f"{source}: {what} {value!r} is not one of {list(known)}")
    return torch.tensor([lookup[v] for v in values], dtype=torch.long), known


def build_clips(
    items: Iterable[tuple[str, Callable[[], Tensor], dict[str, str]]],
    *,
    sample_rate: int,
    num_samples: int,
    hop: int = 1,
    label_field: str | None = "label",
    speaker_field: str | None = "speaker",
    label_names: Sequence[str] | None = None,
    speaker_names: Sequence[str] | None = None,
    checks: ClipChecks = ClipChecks(),
    on_error: OnError = "raise",
    progress: bool = True,
    total: int | None = None,
) -> AudioClips:
    """Decode, check and fit every ``(source, read, fields)`` item into :class:`AudioClips`.
    ``read()`` returns the mono waveform at ``sample_rate``."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    waves, sources, metas, skipped = [], [], [], []
    bar = tqdm(total=total, desc="audio files", unit="file", disable=not progress, delay=0.2)
    for source, read, meta in items:
        bar.update()
        try:
            wave = read()
            check_clip(wave, sample_rate, source, checks)
        except ValueError as err:
            if on_error == "raise":
                raise
            skipped.append(str(err))
            continue
        waves.append(fit_length(wave, num_samples, hop=hop))
        sources.append(source)
        metas.append(meta)
    bar.close()
    if not waves:
        detail = f"; first problem: {skipped[0]}" if skipped else ""
        raise ValueError(f"no usable audio clips were found{detail}")
    labels, label_names = _index(
        [m.get(label_field) if label_field else None for m in metas],
        sources,
        "label",
        label_names,
    )
    speakers, speaker_names = _index(
        [m.get(speaker_field) if speaker_field else None for m in metas],
        sources,
        "speaker",
        speaker_names,
    )
    return AudioClips(
        torch.stack(waves),
        sample_rate,
        labels,
        speakers,
        label_names,
        speaker_names,
        tuple(sources),
        tuple(metas),
        tuple(skipped),
    )
