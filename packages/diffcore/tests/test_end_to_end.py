"""The pieces together: a U-Net trained by the one training loop with GaussianProcess (and with
flow matching, the same process on a straight path), saved, loaded back from safetensors, and
sampled with guidance, img2img and inpainting."""

import pytest
import torch

from diffcore.denoisers import guidance
from diffcore.io import from_pretrained
from diffcore.nn import UNet, UNetConfig
from diffcore.processes import GaussianProcess, flow_matching
from diffcore.samplers import sample_dpmpp_2m, sample_euler
from diffcore.schedules import CosineSchedule, karras_grid
from diffcore.training import TrainConfig, train


def two_class_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: bright left half; class 1: bright top half (8x8, in [-1, 1])."""
    labels = torch.arange(n) % 2
    images = -torch.ones(n, 1, 8, 8)
    images[labels == 0, :, :, :4] = 1.0
    images[labels == 1, :, :4, :] = 1.0
    return images, labels


@pytest.mark.parametrize(
    "process",
    [GaussianProcess(CosineSchedule(), prediction="v"), flow_matching()],
    ids=["v-prediction", "flow-matching"],
)
def test_train_save_load_and_sample_a_class_conditional_unet(tmp_path, process):
    torch.manual_seed(0)
    images, labels = two_class_images(64)
    config = UNetConfig(
        in_channels=1,
        channels=(16, 32),
        blocks_per_level=1,
        attention_levels=(),
        num_classes=2,
        norm_groups=8,
        mid_attention=False,
    )
    null = config.num_classes

    def loss_fn(model, batch, generator):
        x0, y = batch
        drop = torch.rand(y.shape, generator=generator, device=y.device) < 0.2
        return process.loss(model, x0, generator, labels=torch.where(drop, null, y))

    dataset = list(zip(images, labels, strict=True))
    run = TrainConfig(
        steps=150, batch_size=32, lr=3e-3, ema_decay=None, checkpoint_every=100, log_every=10
    )
    result = train(UNet(config), loss_fn, dataset, run, out_dir=tmp_path, progress=False)
    assert result.log[-1].loss < 0.5 * result.log[0].loss

    model = from_pretrained(UNet, result.final_model).eval()
    denoiser = process.denoiser(model)
    g = torch.Generator().manual_seed(0)
    want = torch.tensor([0, 1, 0, 1])
    guided = guidance(denoiser, 2.0, {"labels": want}, {"labels": torch.full((4,), null)})
    grid = karras_grid(20, 0.01, process.sigma_max)
    samples = sample_dpmpp_2m(guided, torch.randn(4, 1, 8, 8, generator=g), grid, generator=g)
    left = samples[..., :, :4].mean((1, 2, 3)) - samples[..., :, 4:].mean((1, 2, 3))
    top = samples[..., :4, :].mean((1, 2, 3)) - samples[..., 4:, :].mean((1, 2, 3))
    assert ((left > top) == (want == 0)).all(), (left, top)

    # inpainting keeps the known half; img2img at low strength stays near its input
    known = images[:4]
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[..., :, :4] = True
    filled = sample_euler(
        guided, torch.randn(4, 1, 8, 8, generator=g), grid, known=known, mask=mask
    )
    assert torch.equal(filled[mask], known[mask])
    edited = sample_euler(
        guided, torch.randn(4, 1, 8, 8, generator=g), grid, x_init=known, t_start=0.2
    )
    assert (edited - known).abs().mean() < 0.5
