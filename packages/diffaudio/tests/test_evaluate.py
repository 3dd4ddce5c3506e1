"""The judge and the quality numbers built on it; vocoder scores."""

import math

import pytest
import torch

from diffaudio.data import AudioClips
from diffaudio.evaluate import evaluate_samples, evaluate_vocoder, judge_accuracy
from diffaudio.judge import Judge, train_judge
from diffaudio.spectrogram import SpectrogramConfig, griffin_lim
from diffcore.io import from_pretrained
from diffcore.training import TrainConfig

SPEC = SpectrogramConfig(frames=24)
PITCHES = (250.0, 700.0, 1800.0)


def tones(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of tones with random phase, loudness and onset; (N, L), (N,)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(SPEC.num_samples) / SPEC.sample_rate
    waves, labels = [], []
    for label, pitch in enumerate(PITCHES):
        for _ in range(n_per_class):
            phase, amp = torch.rand(2, generator=g)
            onset = float(torch.rand((), generator=g)) * 0.1
            env = (t > onset).float()
            waves.append((0.05 + 0.3 * amp) * torch.sin(2 * math.pi * pitch * t + 6 * phase) * env)
            labels.append(label)
    return torch.stack(waves), torch.tensor(labels)


def test_the_judge_learns_classes_and_scores_samples(tmp_path):
    waves, labels = tones(8, seed=0)
    clips = AudioClips(waves, SPEC.sample_rate, labels, label_names=("low", "mid", "high"))
    config = TrainConfig(steps=80, batch_size=12, lr=3e-3, ema_decay=None, log_every=10)
    result = train_judge(
        clips, tmp_path, config, spectrogram=SPEC, channels=(8, 16), progress=False
    )
    judge = from_pretrained(Judge, result.final_model)
    test_waves, test_labels = tones(4, seed=1)
    assert judge_accuracy(judge, test_waves, test_labels) == 1.0
    same = evaluate_samples(judge, test_waves, test_labels, test_waves, test_labels)
    assert same.accuracy == 1.0 and abs(same.frechet_distance) < 1e-6
    assert same.spread_ratio == pytest.approx(1.0)
    # one clip repeated per class: as classifiable, but no variety at all
    firsts = torch.stack([test_waves[test_labels == c][0] for c in range(3)])
    copies = firsts.repeat_interleave(4, 0)
    collapsed = evaluate_samples(
        judge, copies, torch.arange(3).repeat_interleave(4), test_waves, test_labels
    )
    assert collapsed.accuracy == 1.0 and collapsed.spread_ratio < 1e-6
    wrong = evaluate_samples(judge, test_waves, (test_labels + 1) % 3, waves)
    assert wrong.accuracy == 0.0
    only_low = evaluate_samples(judge, test_waves[:4], None, waves)
    assert math.isnan(only_low.accuracy) and only_low.frechet_distance > same.frechet_distance


def test_vocoder_scores_are_distances_and_speed():
    waves, _ = tones(2, seed=0)
    gl = evaluate_vocoder(lambda x: griffin_lim(x, SPEC, n_iter=8), waves, SPEC, timing_batch=2)
    assert gl.count == 6 and gl.mel_l1_db > 0 and gl.mrstft > 0 and gl.real_time_factor > 0
    exact = evaluate_vocoder(lambda x: waves[: x.shape[0]], waves, SPEC, batch_size=64)
    assert exact.mel_l1_db == 0 and exact.mrstft == 0
