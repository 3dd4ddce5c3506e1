"""Training for a wall-clock budget: step timing, step counts and the EMA window."""

import torch

from diffimage import build_model, from_arrays
from diffimage.budget import seconds_per_step


def test_step_time_is_measured_on_a_copy_and_leaves_the_model_untouched():
    model = build_model("tiny", channels=1, image_size=(8, 8), num_classes=2)
    data = from_arrays(torch.zeros(8, 1, 8, 8, dtype=torch.uint8), labels=[0, 1] * 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert seconds_per_step(model, data, 4, trials=2) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
