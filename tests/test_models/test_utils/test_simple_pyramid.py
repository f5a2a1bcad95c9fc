import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.models.utils import LayerNorm2d, SimplePyramid, build_norm_2d


@pytest.mark.parametrize('hw', [(14, 14), (33, 49), (5, 7), (1, 1)])
def test_levels_shapes_at_any_size(hw):
    pyr = SimplePyramid(8).eval()
    h, w = hw
    with torch.no_grad():
        outs = pyr(torch.randn(2, 8, h, w))
    assert [tuple(o.shape) for o in outs] == [
        (2, 8, 4 * h, 4 * w), (2, 8, 2 * h, 2 * w), (2, 8, h, w),
        (2, 8, -(-h // 2), -(-w // 2))]  # max pooling keeps the odd row / column
    assert all(o.is_contiguous() and torch.isfinite(o).all() for o in outs)


def test_level_structure_follows_the_scale():
    pyr = SimplePyramid(8, scales=(4, 2, 1, 0.5, 0.25), out_channels=[2, 3, 8, 8, 5])
    x4 = pyr.levels['0'].resample
    assert [type(m) for m in x4] == [nn.ConvTranspose2d, LayerNorm2d, nn.GELU,
                                     nn.ConvTranspose2d]
    assert (x4[0].in_channels, x4[0].out_channels, x4[3].out_channels) == (8, 2, 2)
    assert x4[0].kernel_size == x4[0].stride == (2, 2)
    assert isinstance(pyr.levels['1'].resample[0], nn.ConvTranspose2d)
    assert isinstance(pyr.levels['2'].resample, nn.Identity)
    assert isinstance(pyr.levels['2'].proj, nn.Identity)  # 8 -> 8
    pool = pyr.levels['4'].resample[0]
    assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 4 and pool.ceil_mode
    assert pyr.levels['4'].proj.out_channels == 5  # 1x1 conv: 8 -> 5
    assert pyr.out_channels == [2, 3, 8, 8, 5]
    outs = pyr(torch.randn(1, 8, 8, 12))
    assert [o.shape[1:] for o in outs] == [(2, 32, 48), (3, 16, 24), (8, 8, 12),
                                           (8, 4, 6), (5, 2, 3)]


def test_identity_and_pooling_levels_without_norm_are_exact():
    pyr = SimplePyramid(4, scales=(1, 0.5), out_norm=False)
    x = torch.randn(1, 4, 6, 7)
    same, pooled = pyr(x)
    torch.testing.assert_close(same, x, rtol=0, atol=0)
    torch.testing.assert_close(pooled, F.max_pool2d(x, 2, 2, ceil_mode=True))


def test_out_indices_build_only_their_levels():
    pyr = SimplePyramid(8, out_indices=(1, 3), out_channels=[4, 5, 6, 7])
    assert sorted(pyr.levels.keys()) == ['1', '3']
    assert pyr.out_channels == [5, 7]
    assert all(n.startswith(('levels.1.', 'levels.3.'))
               for n, _ in pyr.named_parameters())
    outs = pyr(torch.randn(1, 8, 6, 6))
    assert [tuple(o.shape) for o in outs] == [(1, 5, 12, 12), (1, 7, 3, 3)]


def test_one_input_per_level_and_cropping():
    pyr = SimplePyramid(4, out_norm=False).eval()
    feats = [torch.randn(1, 4, 5, 7) for _ in range(4)]
    outs = pyr(feats, out_sizes=[(17, 25), (9, 13), (5, 7), (3, 4)])
    assert [tuple(o.shape[2:]) for o in outs] == [(17, 25), (9, 13), (5, 7), (3, 4)]
    full = pyr(feats)
    torch.testing.assert_close(outs[0], full[0][:, :, :17, :25])  # bottom/right crop
    torch.testing.assert_close(outs[2], feats[2])


def test_layernorm_normalises_each_position_over_channels():
    ln = build_norm_2d(dict(type='LN', eps=1e-6), 6)
    assert isinstance(ln, LayerNorm2d) and ln.eps == 1e-6
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 3, 5)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    ref = (x - mean) / torch.sqrt(var + 1e-6) * ln.weight.view(1, -1, 1, 1) \
        + ln.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(ln(x), ref)
    frozen = build_norm_2d(dict(type='LN', requires_grad=False), 6)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert isinstance(build_norm_2d(dict(type='BN'), 6), nn.BatchNorm2d)
    assert isinstance(build_norm_2d(dict(type='GN', num_groups=2), 6), nn.GroupNorm)


def test_bn_norms_and_gradients():
    pyr = SimplePyramid(8, norm_cfg=dict(type='BN'), out_channels=16)
    assert sum(isinstance(m, _BatchNorm) for m in pyr.modules()) == 5
    outs = pyr(torch.randn(2, 8, 4, 4, requires_grad=True))
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in pyr.parameters())


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=8, scales=(3, 1)), r'scale=3 is not supported.*power of two'),
    (dict(in_channels=8, scales=(1, 'x')), r"scale='x' is not supported"),
    (dict(in_channels=8, scales=()), 'at least one level'),
    (dict(in_channels=0), r'in_channels=0'),
    (dict(in_channels=8, out_channels=[4, 4]), r'out_channels=\[4, 4\].*4 of them'),
    (dict(in_channels=8, out_indices=(0, 4)), r'out_indices=\(0, 4\).*\[0, 3\]'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimplePyramid(**kwargs)


def test_bad_inputs():
    pyr = SimplePyramid(8)
    with pytest.raises(ValueError, match=r'level 0 has shape \(1, 4, 5, 5\).*\(B, 8'):
        pyr(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match='got 2 input maps for 4 levels'):
        pyr([torch.randn(1, 8, 5, 5)] * 2)
    with pytest.raises(ValueError, match=r'out_sizes\[0\]=\(30, 1\) is larger'):
        pyr(torch.randn(1, 8, 5, 5), out_sizes=[(30, 1), (1, 1), (1, 1), (1, 1)])


@pytest.mark.parametrize('norm_cfg', [dict(type='LN'), dict(type='BN')])
def test_parameters_to_vector(norm_cfg):
    """Transposed convs, 1x1 convs and norms: every parameter and gradient is
    contiguous, as ``parameters_to_vector`` needs, also for channels-last
    inputs."""
    pyramid = SimplePyramid(16, scales=(4, 2, 1, 0.5), out_channels=8,
                            norm_cfg=norm_cfg)
    x = torch.randn(2, 16, 6, 5).contiguous(memory_format=torch.channels_last)
    sum(o.mean() for o in pyramid(x)).backward()
    params = list(pyramid.parameters())
    vec = torch.nn.utils.parameters_to_vector(params)
    assert vec.numel() == sum(p.numel() for p in params)
    assert torch.isfinite(torch.nn.utils.parameters_to_vector(
        [p.grad for p in params])).all()
