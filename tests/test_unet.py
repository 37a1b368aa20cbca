import math

import pytest
import torch

from ddpm_course.unet import CONFIGS, UNet, UNetConfig, count_parameters, get_config, timestep_embedding


def randomised(name="tiny", **kw):
    """A U-Net whose zero-initialised output layers are given random weights, so outputs depend on input."""
    torch.manual_seed(0)
    cfg = get_config(name)
    model = UNet(UNetConfig(**{**cfg.to_dict(), **kw}) if kw else cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return model


def test_named_configs_have_the_documented_sizes():
    assert 1e6 <= count_parameters(UNet("mnist")) <= 5e6
    assert 10e6 <= count_parameters(UNet("cifar10")) <= 35e6
    assert count_parameters(UNet("tiny")) < 100_000
    with pytest.raises(ValueError, match="config must be one of"):
        UNet("imagenet")


def test_output_shape_and_integer_or_float_t():
    model = randomised()
    x = torch.randn(3, 1, 28, 28)
    out_long = model(x, torch.tensor([0, 500, 999]))
    out_float = model(x, torch.tensor([0.0, 500.0, 999.0]))
    assert out_long.shape == x.shape
    torch.testing.assert_close(out_long, out_float)
    # a fractional t lands between its neighbours' embeddings, so the output differs from both
    out_mid = model(x, torch.tensor([0.5, 500.5, 998.5]))
    assert not torch.allclose(out_mid, out_long)


def test_mnist_and_cifar_levels():
    """mnist runs 28 -> 14 -> 7 with attention at 7x7; cifar10 keeps 3 channels at 32x32."""
    m = UNet("mnist")
    assert m.config.channel_mults == (1, 2, 2) and m.config.attn_levels == (2,)
    seen = []
    m.mid_attn.register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        m(torch.randn(1, 1, 28, 28), torch.tensor([10]))
    assert seen == [(7, 7)]
    c = UNet(UNetConfig(**{**CONFIGS["cifar10"].to_dict(), "base_channels": 16, "groups": 8}))
    assert c(torch.randn(2, 3, 32, 32), torch.tensor([1, 2])).shape == (2, 3, 32, 32)


def test_null_label_is_the_unconditional_call():
    model = randomised()
    assert model.null_label == 10
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([5, 50, 500, 900])
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((4,), 10)))
    assert not torch.allclose(model(x, t), model(x, t, torch.tensor([0, 1, 2, 3])))


def test_bad_labels_and_unconditional_model():
    model = randomised()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="y must lie in"):
        model(x, t, torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="integer tensor"):
        model(x, t, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="t must have shape"):
        model(x, torch.tensor([1, 2, 3]))
    uncond = randomised(num_classes=None)
    assert uncond(x, t).shape == x.shape
    with pytest.raises(ValueError, match="unconditional"):
        uncond(x, t, torch.tensor([0, 1]))


def test_skip_scale_changes_the_output_and_is_validated():
    model = randomised()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([100, 700])
    base = model(x, t)
    model.skip_scale = 1.0
    torch.testing.assert_close(model(x, t), base)
    model.skip_scale = 0.8
    scaled = model(x, t)
    model.skip_scale = [1.0, 0.8]                # per level: only the inner level scaled
    per_level = model(x, t)
    assert not torch.allclose(scaled, base) and not torch.allclose(per_level, base)
    assert not torch.allclose(per_level, scaled)
    model.skip_scale = [1.0, 1.0]
    torch.testing.assert_close(model(x, t), base)
    model.skip_scale = [1.0, 0.9, 0.8]
    with pytest.raises(ValueError, match="one factor per level"):
        model(x, t)


def test_timestep_embedding_formula():
    t = torch.tensor([0.0, 3.0])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (2, 8)
    freqs = [10000 ** (-k / 4) for k in range(4)]
    expected = [math.cos(3 * f) for f in freqs] + [math.sin(3 * f) for f in freqs]
    torch.testing.assert_close(emb[1], torch.tensor(expected))
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))


def test_config_round_trip_and_unknown_keys():
    cfg = CONFIGS["mnist"]
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown U-Net config keys"):
        UNetConfig.from_dict({**cfg.to_dict(), "heads": 4})
    with pytest.raises(ValueError, match="divisible"):
        UNet(UNetConfig(image_size=30, channel_mults=(1, 2, 2)))


def test_gradients_reach_every_parameter():
    model = randomised().train()
    out = model(torch.randn(2, 1, 28, 28), torch.tensor([3, 400]), torch.tensor([1, 10]))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
