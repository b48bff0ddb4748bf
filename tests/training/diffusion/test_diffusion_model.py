"""The bare UNet, the EDM denoiser and the samplers on tiny CPU models."""

from __future__ import annotations

import pytest
import torch

from training.diffusion import (
    CFGDenoiser,
    Denoiser,
    MelUNet,
    UNetConfig,
    get_sigmas_exponential,
    get_sigmas_karras,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_euler,
    sample_heun,
    sample_mels,
    sampling,
)

TINY = UNetConfig(channels=8, channel_mult=(1, 2), emb_dim=32, fourier_features=16, groups=4)


def _net(config: UNetConfig = TINY, seed: int = 0) -> MelUNet:
    torch.manual_seed(seed)
    net = MelUNet(config)
    # Zero-initialised output layers make the untrained net output 0 everywhere; perturb them
    # so the tests below see a network that actually depends on its inputs.
    with torch.no_grad():
        for p in net.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0, 0.05)
    return net


def _cond(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=1)


@pytest.mark.parametrize("frames", [2, 16, 62, 100, 256])
def test_unet_any_length_divisible_by_factor(frames: int) -> None:
    net = _net()
    assert net.downsample_factor == 2
    x = torch.randn(3, 1, 64, frames)
    out = net(x, torch.full((3,), 0.5), _cond(3))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unet_rejects_bad_shapes_with_a_clear_message() -> None:
    net = _net()
    with pytest.raises(ValueError, match="divisible by the downsampling factor 2"):
        net(torch.randn(1, 1, 64, 15), torch.ones(1), _cond(1))
    with pytest.raises(ValueError, match=r"expected x \[B, 1, 64, frames\]"):
        net(torch.randn(1, 1, 32, 16), torch.ones(1), _cond(1))
    with pytest.raises(ValueError, match="cond must be"):
        net(torch.randn(2, 1, 64, 16), torch.ones(2), _cond(3))
    with pytest.raises(ValueError, match="not divisible by the downsampling factor"):
        UNetConfig(n_mels=62, channel_mult=(1, 2, 4))


def test_unet_with_attention_and_three_levels() -> None:
    config = UNetConfig(
        channels=8,
        channel_mult=(1, 2, 2),
        attention_levels=(2,),
        emb_dim=32,
        groups=4,
        fourier_features=16,
        attention_heads=2,
    )
    net = _net(config)
    assert net.downsample_factor == 4
    x = torch.randn(2, 1, 64, 36)
    assert net(x, torch.ones(2), _cond(2)).shape == x.shape


def test_condition_changes_output_and_drop_means_null_embedding() -> None:
    net = _net()
    x, sigma, cond = torch.randn(2, 1, 64, 16), torch.ones(2), _cond(2)
    a = net(x, sigma, cond)
    b = net(x, sigma, _cond(2, seed=9))
    assert not torch.allclose(a, b)
    dropped = net(x, sigma, cond, drop=torch.tensor([True, False]))
    uncond = net(x, sigma, None)
    assert torch.allclose(dropped[0], uncond[0])
    assert torch.allclose(dropped[1], a[1])


class _ZeroNet(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, cond: object, drop: object = None
    ) -> torch.Tensor:
        return torch.zeros_like(x)


def test_edm_scalings_match_the_paper() -> None:
    d = Denoiser(_net(), sigma_data=0.5)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    c_skip, c_out, c_in = d.get_scalings(sigma)
    assert torch.allclose(c_skip, 0.25 / (sigma**2 + 0.25))
    assert torch.allclose(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    assert torch.allclose(c_in, 1 / (sigma**2 + 0.25).sqrt())
    # At tiny sigma the denoiser is (almost) the identity: D(x) -> x.
    x = torch.randn(2, 1, 64, 8)
    assert torch.allclose(d(x, torch.full((2,), 1e-4), _cond(2)), x, atol=1e-3)


def test_loss_is_unit_scale_and_mask_excludes_padding() -> None:
    d = Denoiser(_net())
    x0 = torch.randn(4, 1, 64, 16)
    g = torch.Generator().manual_seed(0)
    loss = d.loss(x0, _cond(4), generator=g, cond_dropout=0.5)
    assert loss.shape == (4,)
    assert torch.isfinite(loss).all() and 0.1 < float(loss.mean()) < 10
    # Masking arithmetic, isolated from the network (which mixes frames): a zero network.
    zero = Denoiser(_ZeroNet())
    mask = torch.zeros(4, 1, 1, 16)
    mask[..., :8] = 1
    x1 = x0.clone()
    x1[..., 8:] = 100.0  # garbage in the masked-out padding only
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    masked = zero.loss(x0, None, generator=g1, mask=mask)
    assert torch.allclose(masked, zero.loss(x1, None, generator=g2, mask=mask))
    g3, g4 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert not torch.allclose(zero.loss(x0, None, generator=g3), zero.loss(x1, None, generator=g4))
    sigmas = d.sample_sigmas(20000, generator=torch.Generator().manual_seed(0))
    assert abs(float(sigmas.log().mean()) - d.p_mean) < 0.05
    assert abs(float(sigmas.log().std()) - d.p_std) < 0.05


def test_cfg_combines_conditional_and_unconditional() -> None:
    d = Denoiser(_net())
    x, sigma, cond = torch.randn(2, 1, 64, 16), torch.full((2,), 2.0), _cond(2)
    c, u = d(x, sigma, cond), d(x, sigma, None)
    assert torch.allclose(CFGDenoiser(d, scale=1.0)(x, sigma, cond), c, atol=1e-6)
    assert torch.allclose(CFGDenoiser(d, scale=0.0)(x, sigma, cond), u, atol=1e-5)
    assert torch.allclose(CFGDenoiser(d, scale=3.0)(x, sigma, cond), u + 3 * (c - u), atol=1e-5)


def test_cfg_interval_guides_only_inside_it_and_skips_the_unconditional_pass() -> None:
    d = Denoiser(_net())
    x, cond = torch.randn(2, 1, 64, 16), _cond(2)
    rows: list[int] = []
    d.inner_model.register_forward_pre_hook(lambda _m, args: rows.append(args[0].shape[0]))
    cfg = CFGDenoiser(d, scale=3.0, interval=(0.5, 5.0))
    for sigma, guided in ((10.0, False), (5.0, True), (1.0, True), (0.5, False), (0.1, False)):
        s = torch.full((2,), sigma)
        c, u = d(x, s, cond), d(x, s, None)
        rows.clear()
        out = cfg(x, s, cond)
        assert torch.allclose(out, u + 3 * (c - u) if guided else c, atol=1e-5), sigma
        assert rows == ([4] if guided else [2]), sigma  # one batched pass, or the cond pass alone
    # rows at different sigmas: each gets guidance or not by its own sigma
    s = torch.tensor([10.0, 1.0])
    c, u = d(x, s, cond), d(x, s, None)
    out = cfg(x, s, cond)
    assert torch.allclose(out[0], c[0], atol=1e-5)
    assert torch.allclose(out[1], (u + 3 * (c - u))[1], atol=1e-5)
    with pytest.raises(ValueError, match="guidance interval"):
        CFGDenoiser(d, scale=3.0, interval=(5.0, 0.5))


def test_exponential_schedule_is_uniform_in_log_sigma() -> None:
    s = get_sigmas_exponential(6, 0.002, 80.0)
    assert s.shape == (7,) and s[-1] == 0
    assert torch.isclose(s[0], torch.tensor(80.0)) and torch.isclose(s[-2], torch.tensor(0.002))
    steps = s[:-1].log().diff()
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-5)
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        sample_mels(Denoiser(_net()), _cond(1), frames=8, steps=2, schedule="cosine")


def test_precision_auto_follows_the_cpu_and_falls_back_to_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sampling, "cpu_computes_bf16", lambda: False)
    assert sampling.resolve_precision("auto") == "fp32"
    assert sampling.resolve_precision("bf16") == "bf16"  # asked for explicitly
    monkeypatch.setattr(sampling, "cpu_computes_bf16", lambda: True)
    assert sampling.resolve_precision("auto") == "bf16"
    assert sampling.resolve_precision("auto", "cuda") == "fp32"
    assert sampling.resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        sampling.resolve_precision("fp16")


def test_bf16_sampling_is_close_to_fp32_and_restores_the_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = Denoiser(_net(), mel_mean=-5.0, mel_std=2.0)
    cond = _cond(1)
    kwargs = {"frames": 32, "steps": 4, "cfg_scale": 2.0, "seed": 3}
    ref = sample_mels(d, cond, precision="fp32", **kwargs)  # type: ignore[arg-type]
    low = sample_mels(d, cond, precision="bf16", **kwargs)  # type: ignore[arg-type]
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert not torch.equal(low, ref)
    assert float((low - ref).abs().mean()) < 0.05 * float((ref - ref.mean()).abs().mean())
    conv = d.inner_model.conv_in.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    # without native bfloat16, auto is the float32 result exactly
    monkeypatch.setattr(sampling, "cpu_computes_bf16", lambda: False)
    auto = sample_mels(d, cond, precision="auto", **kwargs)  # type: ignore[arg-type]
    assert torch.equal(auto, ref)


def test_karras_schedule() -> None:
    s = get_sigmas_karras(10, 0.002, 80.0)
    assert s.shape == (11,)
    assert (
        s[-1] == 0
        and torch.isclose(s[0], torch.tensor(80.0))
        and torch.isclose(s[-2], torch.tensor(0.002))
    )
    assert (s[:-1] > s[1:]).all()
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        get_sigmas_karras(5, 1.0, 0.5)


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun, sample_dpmpp_2m, sample_dpmpp_3m])
def test_samplers_recover_a_point_mass(sampler: object) -> None:
    """With the exact denoiser of a point mass, every ODE sampler lands on that point."""
    target = torch.randn(1, 1, 64, 8)

    def oracle(x: torch.Tensor, sigma: torch.Tensor, **_: object) -> torch.Tensor:
        return target.expand_as(x)

    x = torch.randn(2, 1, 64, 8) * 80
    out = sampler(oracle, x, get_sigmas_karras(8, 0.002, 80.0))  # type: ignore[operator]
    assert torch.allclose(out, target.expand_as(out), atol=1e-2)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "dpmpp_3m"])
def test_sample_mels_any_length_and_deterministic(sampler: str) -> None:
    d = Denoiser(_net(), mel_mean=-5.0, mel_std=2.0)
    cond = _cond(2)
    a = sample_mels(d, cond, frames=37, steps=3, cfg_scale=2.0, sampler=sampler, seed=5)
    b = sample_mels(d, cond, frames=37, steps=3, cfg_scale=2.0, sampler=sampler, seed=5)
    c = sample_mels(d, cond, frames=37, steps=3, cfg_scale=2.0, sampler=sampler, seed=6)
    assert a.shape == (2, 64, 37)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.isfinite(a).all()
    uncond = sample_mels(d, None, n=3, frames=10, steps=2, sampler=sampler, seed=0)
    assert uncond.shape == (3, 64, 10)


def test_sample_mels_rejects_unknown_sampler() -> None:
    d = Denoiser(_net())
    with pytest.raises(ValueError, match="unknown sampler 'ddim'; expected one of"):
        sample_mels(d, _cond(1), frames=8, steps=2, sampler="ddim")
