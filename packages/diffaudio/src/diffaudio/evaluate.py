"""Quality numbers: a judge's view of generated audio, and a vocoder's distance to real audio.

- :func:`evaluate_samples`: share of samples the judge classifies as the intended class, and the
  Fréchet distance between the judge's features of samples and of real test audio (DiffWave's
  SC09 protocol with our own judge; lower is better, 0 for identical statistics).
- :func:`evaluate_vocoder`: re-synthesise real held-out clips from their spectrograms and
  measure multi-resolution STFT distance, mel L1 (dB) and the real-time factor (seconds of audio
  per second of compute on this machine; 10 means ten times faster than real time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

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


def judge_accuracy(judge: Judge, waves: Tensor, labels: Tensor) -> float:
    """Share of ``waves`` (N, L) the judge assigns to ``labels`` (N,)."""
    predicted, _ = judge_outputs(judge, waves)
    return float((predicted == labels.cpu()).float().mean())


def evaluate_samples(
    judge: Judge, waves: Tensor, intended: Tensor | None, real_waves: Tensor
) -> SampleScores:
    """Score generated ``waves`` (N, L) against real audio (M, L). ``intended`` (N,) class ids
    (None for unconditional samples: accuracy is then nan)."""
    predicted, features = judge_outputs(judge, waves)
    _, real_features = judge_outputs(judge, real_waves)
    accuracy = float("nan")
    if intended is not None:
        accuracy = float((predicted == intended.cpu()).float().mean())
    return SampleScores(accuracy, frechet_distance(features, real_features), waves.shape[0])


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
