"""The shared 2-D U-Net: shapes for any size, conditioning, attention, errors, and that it learns.

Nets here are tiny (widths 8-32) so the whole file runs in seconds on a CPU.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from diffcore.nn import GroupNormSiLU, UNet, UNetConfig, group_norm_silu, sinusoidal_features
from diffcore.nn.blocks import SelfAttention

TINY = dict(channels=(8, 16, 32), blocks_per_level=1, norm_groups=4, head_dim=8)


def tiny(**overrides) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(**{**TINY, **overrides})).eval()


def perturb(net: UNet, scale: float = 0.05) -> UNet:
    """Nudge every weight so zero-initialised output layers stop hiding the rest of the net."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return net


def inputs(batch: int, channels: int, height: int, width: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=generator), torch.rand(
        batch, generator=generator
    )


# ---- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "height", "width"), [(1, 28, 28), (3, 32, 32), (1, 80, 87), (3, 17, 5)]
)
def test_output_has_the_input_size_for_any_height_and_width(channels, height, width):
    net = perturb(tiny(in_channels=channels, attention_levels=(2,)))
    x, t = inputs(2, channels, height, width)
    out = net(x, t)
    assert out.shape == (2, channels, height, width)
    assert torch.isfinite(out).all()
    assert out.abs().mean() > 1e-3


def test_fresh_net_outputs_exactly_zero_because_its_last_conv_is_zero():
    x, t = inputs(2, 3, 16, 16)
    assert torch.equal(tiny()(x, t), torch.zeros(2, 3, 16, 16))


def test_out_channels_can_differ_from_in_channels():
    net = tiny(in_channels=1, out_channels=2)
    x, t = inputs(2, 1, 8, 8)
    assert net(x, t).shape == (2, 2, 8, 8)


def test_odd_sizes_are_replicate_padded_and_cropped_back():
    net = perturb(tiny(in_channels=1))
    x, t = inputs(2, 1, 10, 11)
    padded = F.pad(x, (0, 1, 0, 2), mode="replicate")  # to 12x12, a multiple of 2^(3-1)
    torch.testing.assert_close(net(x, t), net(padded, t)[..., :10, :11])


def test_channels_last_input_and_weights_give_the_same_output():
    net = perturb(tiny(attention_levels=(1, 2)))
    x, t = inputs(2, 3, 16, 12)
    expected = net(x, t)
    torch.testing.assert_close(net(x.to(memory_format=torch.channels_last), t), expected)
    net = net.to(memory_format=torch.channels_last)
    torch.testing.assert_close(net(x.to(memory_format=torch.channels_last), t), expected)


def test_scalar_time_is_broadcast_over_the_batch():
    net = perturb(tiny())
    x, _ = inputs(3, 3, 8, 8)
    torch.testing.assert_close(net(x, torch.tensor(0.3)), net(x, torch.full((3,), 0.3)))


# ---- time, labels, context ---------------------------------------------------------------------


def test_sinusoidal_features_separate_times_in_unit_and_log_snr_ranges():
    t = torch.tensor([0.0, 0.001, 0.5, 1.0, -20.0, -19.0, 19.0, 20.0])
    feats = sinusoidal_features(t, 32)
    assert feats.shape == (8, 32)
    torch.testing.assert_close(feats[0], torch.cat([torch.ones(16), torch.zeros(16)]))
    gaps = torch.cdist(feats, feats) + torch.eye(8) * 1e9
    assert gaps.min() > 0.1  # no two of these noise levels look alike


def test_time_changes_the_output():
    net = perturb(tiny())
    x, _ = inputs(2, 3, 8, 8)
    assert not torch.allclose(net(x, torch.full((2,), 0.2)), net(x, torch.full((2,), 0.8)))


def test_labels_change_the_output_and_none_means_the_null_label():
    net = perturb(tiny(num_classes=10))
    x, t = inputs(2, 3, 8, 8)
    a = net(x, t, labels=torch.tensor([0, 0]))
    b = net(x, t, labels=torch.tensor([7, 7]))
    null = net(x, t, labels=torch.tensor([10, 10]))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, null)
    torch.testing.assert_close(net(x, t), null)
    # each sample sees only its own label
    mixed = net(x, t, labels=torch.tensor([0, 7]))
    torch.testing.assert_close(mixed, torch.stack([a[0], b[1]]))


def test_context_changes_the_output():
    net = perturb(tiny(context_dim=5))
    x, t = inputs(2, 3, 8, 8)
    c1, c2 = torch.randn(2, 5, generator=torch.Generator().manual_seed(3)).chunk(2)
    out1 = net(x, t, context=c1.expand(2, 5))
    out2 = net(x, t, context=c2.expand(2, 5))
    assert not torch.allclose(out1, out2)
    assert not torch.allclose(out1, net(x, t))


# ---- attention and normalisation ---------------------------------------------------------------


@pytest.mark.parametrize(("levels", "mid"), [((), False), ((2,), True), ((0, 1, 2), True)])
def test_attention_is_placed_at_the_requested_levels(levels, mid):
    net = tiny(attention_levels=levels, mid_attention=mid)
    attended = [m for m in net.modules() if isinstance(m, SelfAttention)]
    blocks_down, blocks_up = 1, 2  # blocks_per_level, and one more going up
    assert len(attended) == len(levels) * (blocks_down + blocks_up) + int(mid)
    widths = sorted(m.qkv.in_channels for m in attended)
    expected = sorted([TINY["channels"][lvl] for lvl in levels] * 3 + [32] * int(mid))
    assert widths == expected


def test_self_attention_matches_softmax_attention_written_out():
    torch.manual_seed(0)
    attention = perturb(SelfAttention(16, 8, groups=4))  # 2 heads of 8
    x = torch.randn(2, 16, 3, 5)
    h = attention.qkv(attention.norm(x)).flatten(2)  # (B, 3C, N)
    q, k, v = (part.reshape(2, 2, 8, 15) for part in h.chunk(3, dim=1))  # (B, heads, d, N)
    weights = torch.softmax(torch.einsum("bhdn,bhdm->bhnm", q, k) / math.sqrt(8), dim=-1)
    mixed = torch.einsum("bhnm,bhdm->bhdn", weights, v).reshape(2, 16, 3, 5)
    torch.testing.assert_close(attention(x), x + attention.out(mixed), atol=1e-5, rtol=1e-5)


def test_group_norm_silu_is_groupnorm_then_modulation_then_silu():
    torch.manual_seed(0)
    x, scale, shift = torch.randn(2, 8, 4, 4), torch.randn(2, 8), torch.randn(2, 8)
    norm = perturb(torch.nn.GroupNorm(4, 8))
    expected = F.silu(norm(x) * (1 + scale[..., None, None]) + shift[..., None, None])
    got = group_norm_silu(x, 4, norm.weight, norm.bias, scale, shift)
    torch.testing.assert_close(got, expected)
    module = GroupNormSiLU(8, 4)
    module.load_state_dict(norm.state_dict())
    torch.testing.assert_close(module(x), F.silu(norm(x)))
    with pytest.raises(ValueError, match="both scale and shift"):
        group_norm_silu(x, 4, None, None, scale=scale)


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "call", "error", "message"),
    [
        ({}, lambda n, x, t: n(x[:, :1], t), ValueError, "3 input channels"),
        ({}, lambda n, x, t: n(x[0], t), ValueError, r"\(B, C, H, W\)"),
        ({}, lambda n, x, t: n(x, t[:1]), ValueError, "t of shape"),
        ({}, lambda n, x, t: n(x, t, labels=torch.tensor([0, 1])), ValueError, "unconditional"),
        ({"num_classes": 4}, lambda n, x, t: n(x, t, labels=torch.tensor([0, 5])), ValueError, "0, 4"),
        ({"num_classes": 4}, lambda n, x, t: n(x, t, labels=torch.tensor([-1, 0])), ValueError, "0, 4"),
        ({"num_classes": 4}, lambda n, x, t: n(x, t, labels=torch.tensor([0.0, 1.0])), TypeError, "integer"),
        ({"num_classes": 4}, lambda n, x, t: n(x, t, labels=torch.tensor([0])), ValueError, "labels of shape"),
        ({}, lambda n, x, t: n(x, t, context=torch.zeros(2, 3)), ValueError, "context_dim=None"),
        ({"context_dim": 3}, lambda n, x, t: n(x, t, context=torch.zeros(2, 4)), ValueError, r"\(2, 3\)"),
    ],
)  # fmt: skip
def test_malformed_inputs_raise_clear_errors(overrides, call, error, message):
    net = tiny(**overrides)
    x, t = inputs(2, 3, 8, 8)
    with pytest.raises(error, match=message):
        call(net, x, t)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"norm_groups": 3}, "norm_groups"),
        ({"attention_levels": (3,)}, "attention_levels"),
        ({"head_dim": 5}, "head_dim"),
        ({"channels": ()}, "channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"channels": (9, 18), "norm_groups": 9, "head_dim": 9}, "time_features"),
    ],
)
def test_invalid_configs_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**{**TINY, **overrides})


def test_config_survives_a_json_round_trip():
    config = UNetConfig(**TINY, num_classes=10, context_dim=7)
    assert UNetConfig(**json.loads(json.dumps(config.to_dict()))) == config
    assert UNet.config_class is UNetConfig


# ---- learning ----------------------------------------------------------------------------------


def test_tiny_net_overfits_one_batch():
    torch.manual_seed(0)
    net = UNet(UNetConfig(**TINY, in_channels=1, num_classes=2)).train()
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(4, 1, 16, 16, generator=generator)
    t = torch.rand(4, generator=generator)
    labels = torch.tensor([0, 1, 0, 1])
    target = torch.randn(4, 1, 16, 16, generator=generator)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = F.mse_loss(net(x, t, labels=labels), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def _stage(**kw) -> UNet:
    torch.manual_seed(0)
    config = UNetConfig(
        in_channels=2,
        channels=(8, 16),
        attention_levels=(),
        mid_attention=False,
        norm_groups=4,
        low_res_channels=2,
    )
    net = UNet(config)
    for weight in net.parameters():  # zero-initialised layers (the last, embedding inputs
        if not weight.any():  # of the blocks) as a trained net would have them
            torch.nn.init.normal_(weight, std=0.1)
    return net


def test_a_cascade_stage_stacks_the_upsampled_low_res_input_it_was_given():
    net = _stage()
    x, low = torch.randn(3, 2, 12, 10), torch.randn(3, 2, 6, 5)
    stacked, level = net._stack_low_res(x, low, torch.tensor([0.0, 0.1, 0.2]))
    assert stacked.shape == (3, 4, 12, 10) and torch.equal(stacked[:, :2], x)
    torch.testing.assert_close(stacked[:, 2:], F.interpolate(low, size=(12, 10), mode="bilinear"))
    assert level.tolist() == pytest.approx([0.0, 0.1, 0.2])
    t = torch.full((3,), 0.5)
    out = net(x, t, low_res=low)
    assert out.shape == x.shape
    assert torch.equal(out, net(x, t, low_res=low.clone()))  # same input, same output
    assert not torch.allclose(out, net(x, t, low_res=low.flip(0)))  # each row reads its own
    assert not torch.allclose(out, net(x, t, low_res=low, low_res_sigma=torch.ones(3)))


def test_a_cascade_stage_needs_its_low_res_input_and_others_refuse_one():
    net = _stage()
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match="cascade stage: give low_res"):
        net(x, torch.zeros(1))
    with pytest.raises(ValueError, match=r"low_res must be \(B, 2, h, w\)"):
        net(x, torch.zeros(1), low_res=torch.randn(1, 1, 4, 4))
    plain = UNet(
        UNetConfig(
            in_channels=2, channels=(8,), attention_levels=(), mid_attention=False, norm_groups=4
        )
    )
    with pytest.raises(ValueError, match="no cascade stage"):
        plain(x, torch.zeros(1), low_res=torch.randn(1, 2, 4, 4))
