"""The judge classifier: trained by the package on real labelled images, saved and loaded through
safetensors; its features give FID / KID and its predictions the class accuracy of samples."""

import pytest
import torch

from diffcore.training import TrainConfig
from diffimage.data import from_arrays, load_images, to_unit_range
from diffimage.evaluate import (
    compare_features,
    judge_accuracy,
    judge_features,
    load_judge,
    score_samples,
    train_judge,
)


@pytest.fixture(scope="module")
def judged(shared_data, tmp_path_factory):
    train = load_images(shared_data / "fashion_mnist", split="train", limit=1024)
    test = load_images(shared_data / "fashion_mnist", split="test", limit=256)
    config = TrainConfig(
        steps=40, batch_size=64, lr=4e-3, ema_decay=None, log_every=10, checkpoint_every=40
    )
    out = tmp_path_factory.mktemp("judge")
    result = train_judge(train, out_dir=out, config=config, progress=False)
    return result, train, test


def test_a_briefly_trained_judge_beats_chance_by_far_on_held_out_images(judged):
    result, _, test = judged
    judge = load_judge(result.final_model)
    assert judge.config.class_names == test.class_names
    assert judge_accuracy(judge, test) > 0.45  # chance is 0.1


def test_the_judge_round_trips_through_safetensors(judged, tmp_path):
    result, _, test = judged
    a, b = load_judge(result.final_model), load_judge(result.final_model)
    x = to_unit_range(test.images[:8])
    assert torch.equal(a(x), b(x))
    assert judge_features(a, test.images[:8]).shape == (8, a.config.feature_dim)


def test_fid_and_kid_are_zero_for_identical_sets_and_grow_with_a_shift(judged):
    result, train, test = judged
    judge = load_judge(result.final_model)
    real = judge_features(judge, test.images)
    fid, kid, _ = compare_features(real, real)
    assert fid < 1e-6
    other = judge_features(judge, train.images[:256])
    noise = judge_features(judge, torch.rand(256, 1, 28, 28) * 2 - 1)
    fid_other, kid_other, _ = compare_features(other, real)
    fid_noise, kid_noise, _ = compare_features(noise, real)
    assert fid_other < fid_noise and kid < kid_other < kid_noise


def test_sample_scores_report_the_share_of_requested_classes(judged):
    result, _, test = judged
    judge = load_judge(result.final_model)
    reference = judge_features(judge, test.images)
    samples = to_unit_range(test.images[:64])
    right = score_samples(judge, samples, reference, labels=test.labels[:64])
    wrong = score_samples(judge, samples, reference, labels=(test.labels[:64] + 1) % 10)
    assert right.accuracy > wrong.accuracy and right.samples == 64
    assert score_samples(judge, samples, reference).accuracy is None


def test_a_judge_needs_labels(tmp_path):
    with pytest.raises(ValueError, match="no labels"):
        train_judge(from_arrays(torch.zeros(8, 1, 4, 4)), out_dir=tmp_path)
