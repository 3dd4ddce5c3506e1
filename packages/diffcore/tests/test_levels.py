"""Level predictors: a small net learns to read how noisy an input is, saves and loads as a
model folder, and a refiner starts each input from the level it reads."""

import torch

from diffcore.generation.refine import predict_levels
from diffcore.io import from_pretrained
from diffcore.nn.level import LevelNet, LevelNetConfig
from diffcore.processes import GaussianProcess
from diffcore.schedules import CosineSchedule
from diffcore.training import TrainConfig, train_level_predictor
from diffcore.training.levels import corrupt_at


def test_a_level_net_learns_to_read_the_noise_level_of_images(tmp_path):
    torch.manual_seed(0)
    # smooth "images": a random brightness per row and a gradient, no noise of their own
    ramp = torch.linspace(-0.5, 0.5, 16)
    x0 = (torch.rand(256, 1, 1, 1) - 0.5) + ramp[None, None, :, None] * torch.rand(256, 1, 1, 1)
    x0 = x0.expand(256, 1, 16, 16).clone()
    rows = [{"x": x} for x in x0]
    process = GaussianProcess(CosineSchedule())
    net = LevelNet(LevelNetConfig(in_channels=1, widths=(8, 16)))
    config = TrainConfig(steps=150, batch_size=32, lr=1e-2, ema_decay=None, checkpoint_every=150)
    result = train_level_predictor(
        net, process, rows, config, key="x", out_dir=tmp_path, progress=False
    )
    predictor = from_pretrained(LevelNet, result.final_model).eval()
    t = torch.linspace(0.05, 0.95, 64, dtype=torch.float64)
    noisy = corrupt_at(process, x0[:64], t, torch.Generator().manual_seed(1))
    read = predict_levels(predictor, noisy)
    error = (read - t.float()).abs().mean()
    assert float(error) < 0.12, f"mean level error {float(error):.3f}"
    # it orders levels it never saw together: far more often right than wrong
    assert float(torch.corrcoef(torch.stack([read, t.float()]))[0, 1]) > 0.9
