"""Quality numbers: a judge's view of generated audio, and a vocoder's distance to real audio.

- :func:`evaluate_samples`: share of samples the judge classifies as the intended class, and the
  Fréchet distance between the judge's features of samples and of real test audio (DiffWave's
  SC09 protocol with our own judge; lower is better, 0 for identical statistics), and how
  varied the samples of each class are next to real recordings of that class (a collapse
  detector: guidance can make every "seven" the same "seven").
- :func:`evaluate_vocoder`: re-synthesise real held-out clips from their spectrograms and
  measure multi-resolution STFT distance, mel L1 (dB) and the real-time factor (seconds of audio
  per second of compute on this machine; 10 means ten times faster than real time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from diffaudio.judge import Judge, judge_outputs
from diffaudio.spectrogram import LogMel, SpectrogramConfig
from diffaudio.vocoder import default_resolutions, mel_l1_db, multi_resolution_stft_distance
from diffcore.metrics import frechet_distance


@dataclass(frozen=True)
class SampleScores:
    accuracy: float  # share of samples classified as their intended class
    frechet_distance: float  # judge-feature FD between samples and real audio
    count: int  # samples scored
    # Mean over classes of (spread of the samples / spread of real audio), spread = mean
    # pairwise judge-feature distance within the class; 1 = as varied as real speech, near 0
    # = one sound per class. nan without intended and real labels.
    spread_ratio: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VocoderScores:
    mel_l1_db: float  # mean |log-mel difference| in dB (lower is better)
    mrstft: float  # multi-resolution STFT distance (lower is better)
    real_time_factor: float  # seconds of audio made per second of compute (higher is faster)
    count: int  # clips scored

    def to_dict(self) -> dict:
        return asdict(self)


def sample_every_class(
    pipe: Any, judge: Judge, per_class: int, real: Any, **sampling: Any
) -> tuple[Tensor, Tensor, Tensor, SampleScores]:
    """``per_class`` samples of each of the pipeline's classes, scored by ``judge`` against
    the ``real`` clips (``AudioClips``): (labels (N,) into the pipeline's class names,
    spectrograms, waveforms, scores). The judge's own ids are matched by class name."""
    names = pipe.model.config.label_names
    labels = torch.arange(len(names)).repeat(per_class)
    specs = pipe.sample(len(labels), labels=labels, **sampling)
    waves = pipe.to_waveform(specs)
    lookup = {n: i for i, n in enumerate(judge.config.label_names)}
    intended = torch.tensor([lookup[names[i]] for i in labels.tolist()])
    return labels, specs, waves, evaluate_samples(judge, waves, intended, real.waves, real.labels)


def judge_accuracy(judge: Judge, waves: Tensor, labels: Tensor) -> float:
    """Share of ``waves`` (N, L) the judge assigns to ``labels`` (N,)."""
    predicted, _ = judge_outputs(judge, waves)
    return float((predicted == labels.cpu()).float().mean())


def evaluate_samples(
    judge: Judge,
    waves: Tensor,
    intended: Tensor | None,
    real_waves: Tensor,
    real_labels: Tensor | None = None,
) -> SampleScores:
    """Score generated ``waves`` (N, L) against real audio (M, L). ``intended`` (N,) class ids
    (None for unconditional samples: accuracy is then nan); ``real_labels`` (M,) the real
    clips' classes, for the spread ratio."""
    predicted, features = judge_outputs(judge, waves)
    _, real_features = judge_outputs(judge, real_waves)
    accuracy = spread = float("nan")
    if intended is not None:
        accuracy = float((predicted == intended.cpu()).float().mean())
        if real_labels is not None:
            spread = spread_ratio(features, intended.cpu(), real_features, real_labels.cpu())
    fd = frechet_distance(features, real_features)
    return SampleScores(accuracy, fd, waves.shape[0], spread)


def within_class_spread(features: Tensor, labels: Tensor) -> dict[int, float]:
    """Mean pairwise Euclidean distance of ``features`` (N, D) within each class of ``labels``
    (N,) that has at least two members."""
    spread = {}
    for c in labels.unique().tolist():
        f = features[labels == c].double()
        if len(f) >= 2:
            spread[c] = float(torch.cdist(f, f).sum() / (len(f) * (len(f) - 1)))
    return spread


def spread_ratio(
    features: Tensor, labels: Tensor, real_features: Tensor, real_labels: Tensor
) -> float:
    """Mean over the classes present in both of (sample spread / real spread)."""
    ours = within_class_spread(features, labels)
    real = within_class_spread(real_features, real_labels)
    ratios = [ours[c] / real[c] for c in ours if c in real and real[c] > 0]
    return sum(ratios) / len(ratios) if ratios else float("nan")


def real_time_factor(
    synthesize: Callable[[Tensor], Tensor], x: Tensor, audio_seconds: float, *, repeats: int = 3
) -> float:
    """Seconds of audio per second of compute: best of ``repeats`` timed calls after a warm-up."""
    with torch.no_grad():
        synthesize(x)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            synthesize(x)
            best = min(best, time.perf_counter() - start)
    return audio_seconds / best


@torch.no_grad()
def evaluate_vocoder(
    synthesize: Callable[[Tensor], Tensor],
    waves: Tensor,
    spectrogram: SpectrogramConfig,
    *,
    batch_size: int = 64,
    timing_batch: int = 16,
) -> VocoderScores:
    """Re-synthesise real clips ``waves`` (N, L) from their normalized log-mels with
    ``synthesize`` ((B, n_mels, T) -> (B, L)) and compare with the originals."""
    logmel = LogMel(spectrogram)
    resolutions = default_resolutions(spectrogram)
    mel_errs, stft_errs = [], []
    for chunk in waves.split(batch_size):
        pred = synthesize(logmel(chunk)).cpu()
        mel_errs.append(mel_l1_db(pred, chunk, logmel, reduce=False))
        stft_errs.append(multi_resolution_stft_distance(pred, chunk, resolutions, reduce=False))
    timing = logmel(waves[:timing_batch])
    seconds = timing.shape[0] * waves.shape[1] / spectrogram.sample_rate
    return VocoderScores(
        float(torch.cat(mel_errs).mean()),
        float(torch.cat(stft_errs).mean()),
        real_time_factor(synthesize, timing, seconds),
        waves.shape[0],
    )
