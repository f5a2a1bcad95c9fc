"""S2-MLP backbone: the spatial shift against an independent reference (and the
in-place trap), shapes at any size, params / FLOPs of the presets, switches and
errors."""
import numpy as np
import pytest
import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.models import S2MLP
from mmsmlp.models.backbones.s2mlp import S2MLPBlock, spatial_shift

SMALL = dict(embed_dims=16, num_blocks=3, mlp_ratio=2)
SIZES = [(224, 224), (513, 771), (65, 97)]


# ------------------------------------------------------------------ the shift
def reference_shift(x: np.ndarray) -> np.ndarray:
    """Per pixel and channel, from the paper's definition: the four channel groups
    move by one position right, left, down, up; a position with no source keeps
    its value."""
    _, h, w, c = x.shape
    bounds = [0, c // 4, c // 2, 3 * c // 4, c]
    moves = [(0, 1), (0, -1), (1, 0), (-1, 0)]  # (down, right) of each group
    out = np.empty_like(x)
    for g, (di, dj) in enumerate(moves):
        for ch in range(bounds[g], bounds[g + 1]):
            for i in range(h):
                for j in range(w):
                    si, sj = i - di, j - dj
                    if 0 <= si < h and 0 <= sj < w:
                        out[:, i, j, ch] = x[:, si, sj, ch]
                    else:
                        out[:, i, j, ch] = x[:, i, j, ch]
    return out


def shift_in_place(x):
    """The common public form (slice assignments on the tensor itself), with this
    project's axes: W is dim 2, H is dim 1."""
    c = x.shape[-1]
    x[:, :, 1:, :c // 4] = x[:, :, :-1, :c // 4]
    x[:, :, :-1, c // 4:c // 2] = x[:, :, 1:, c // 4:c // 2]
    x[:, 1:, :, c // 2:3 * c // 4] = x[:, :-1, :, c // 2:3 * c // 4]
    x[:, :-1, :, 3 * c // 4:] = x[:, 1:, :, 3 * c // 4:]
    return x


@pytest.mark.parametrize('shape', [(2, 4, 5, 8), (1, 3, 7, 10), (1, 1, 1, 4),
                                   (1, 2, 1, 5), (2, 6, 3, 3)])
def test_shift_matches_the_per_pixel_reference(shape):
    x = torch.randn(*shape)
    before = x.clone()
    out = spatial_shift(x)
    np.testing.assert_array_equal(out.numpy(), reference_shift(x.numpy()))
    torch.testing.assert_close(x, before, rtol=0, atol=0)  # input untouched


def test_shift_directions_on_a_small_example():
    x = torch.arange(12.).view(1, 3, 4, 1).repeat(1, 1, 1, 4)  # value = 4 * i + j
    out = spatial_shift(x)[0]
    assert out[..., 0].tolist() == [[0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]]
    assert out[..., 1].tolist() == [[1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11]]
    assert out[..., 2].tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7]]
    assert out[..., 3].tolist() == [[4, 5, 6, 7], [8, 9, 10, 11], [8, 9, 10, 11]]


def test_in_place_shift_is_wrong_in_pytorch():
    """The trap is real: the same four assignments are the intended shift with
    NumPy's copy semantics, but PyTorch copies overlapping memory in order and
    smears the first row / column along the axis (right and down groups)."""
    x = torch.randn(2, 5, 6, 8)
    np.testing.assert_array_equal(shift_in_place(x.numpy().copy()),
                                  reference_shift(x.numpy()))
    try:
        got = shift_in_place(x.clone())
    except RuntimeError as err:  # a PyTorch that refuses the overlapping copy
        assert 'memory location' in str(err)
        return
    assert not torch.equal(got, spatial_shift(x))
    right, down = got[..., 0:2], got[..., 4:6]
    torch.testing.assert_close(right, x[:, :, :1, 0:2].expand_as(right))  # smeared
    torch.testing.assert_close(down, x[:, :1, :, 4:6].expand_as(down))


def test_one_block_sees_the_four_neighbours():
    torch.manual_seed(0)
    block = S2MLPBlock(8, mlp_ratio=2)
    for i, j, expected in [(2, 3, {(2, 3), (2, 2), (2, 4), (1, 3), (3, 3)}),
                           (0, 0, {(0, 0), (0, 1), (1, 0)})]:
        x = torch.randn(1, 5, 6, 8, requires_grad=True)
        block(x)[0, i, j].sum().backward()
        seen = {tuple(p) for p in x.grad[0].abs().sum(-1).nonzero().tolist()}
        assert seen == expected


# ------------------------------------------------------------------ backbone
@pytest.mark.parametrize('size', SIZES)
def test_block_and_pyramid_outputs_at_any_size(size):
    x = torch.randn(1, 3, *size)
    model = S2MLP(arch=SMALL).eval()
    pyr = S2MLP(arch=SMALL, with_pyramid=True,
                pyramid_cfg=dict(out_channels=[8, 16, 32, 64])).eval()
    with torch.no_grad():
        (out, ) = model(x)
        levels = pyr(x)
    assert out.shape == (1, 16, -(-size[0] // 16), -(-size[1] // 16))
    for i, level in enumerate(levels):
        stride = 4 * 2**i
        assert level.shape == (1, 8 * 2**i, -(-size[0] // stride),
                               -(-size[1] // stride))
        assert torch.isfinite(level).all()
    assert pyr.num_features == [8, 16, 32, 64]


def test_pyramid_from_one_block_per_level():
    model = S2MLP(arch=SMALL, with_pyramid=True, pyramid_blocks=(0, 1, 2, 2),
                  out_indices=(0, 2)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        outs = model(x)
        t = model.patch_embed(x).permute(0, 2, 3, 1)
        t = model.blocks[0](t)
        level0 = model.pyramid.levels['0'](t.permute(0, 3, 1, 2))
        t = model.norm(model.blocks[2](model.blocks[1](t)))
        level2 = model.pyramid.levels['2'](t.permute(0, 3, 1, 2))
    torch.testing.assert_close(outs[0], level0)
    torch.testing.assert_close(outs[1], level2)


def test_paper_options():
    plain = S2MLP(arch=SMALL, patch_norm=False, final_norm=False)
    assert plain.patch_embed.norm is None
    assert isinstance(plain.norm, torch.nn.Identity)
    default = S2MLP(arch=SMALL)
    assert isinstance(default.patch_embed.norm, torch.nn.LayerNorm)
    assert isinstance(default.norm, torch.nn.LayerNorm)
    assert S2MLP.arch_zoo['w'] == S2MLP.arch_zoo['wide']


def test_classifier_at_any_size_and_gradients():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cls = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='S2MLP', arch=SMALL),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=5, in_channels=16)))
    logits = cls(torch.randn(2, 3, 150, 260), mode='tensor')
    assert logits.shape == (2, 5)
    logits.sum().backward()
    for name, p in cls.named_parameters():
        assert p.grad is not None, name


# ----------------------------------------------------------------------- counts
# arch: (C, params in M, GFLOPs at 224) measured with mmengine (one multiply-add
# = one FLOP). The paper: wide 71M / 14.0G, deep 51M / 10.5G. The FLOPs match;
# the parameters do not (wide: 71.47M without the classifier; deep: no isotropic
# setting with 10.5G at 196 patches has 51M), see the S2MLP docstring.
TABLE = {
    'wide': (768, 72.24, 14.01, 14.0),
    'deep': (384, 53.92, 10.49, 10.5),
}


@pytest.mark.parametrize('arch', list(TABLE))
def test_params_and_flops(arch):
    channels, params_m, gflops, paper_gflops = TABLE[arch]
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='S2MLP', arch=arch),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=channels))).eval()
    assert abs(parameter_count(model)[''] / 1e6 - params_m) < 0.01
    analyzer = FlopAnalyzer(model, torch.randn(1, 3, 224, 224))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    total = analyzer.total() / 1e9
    assert abs(total - gflops) < 0.01
    assert abs(total - paper_gflops) < 0.1
    # the corner padding and the arithmetic on the traced size that computes it
    assert set(analyzer.unsupported_ops()) <= {
        'aten::add', 'aten::mul', 'aten::gelu', 'aten::tensor_split', 'aten::pad',
        'aten::neg', 'aten::sub'}


# --------------------------------------------------------------------- switches
def test_frozen_stages_and_norm_eval():
    model = S2MLP(arch=SMALL, frozen_stages=0, with_pyramid=True, norm_eval=True,
                  pyramid_cfg=dict(norm_cfg=dict(type='BN')))
    model.train()
    for m in (model.patch_embed, model.blocks[0]):
        assert not m.training and all(not p.requires_grad for p in m.parameters())
    assert model.blocks[1].training and model.blocks[1].norm1.weight.requires_grad
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.all(m.running_mean == 0) for m in bns)
    last = S2MLP(arch=SMALL, frozen_stages=2)
    assert not last.norm.weight.requires_grad


def test_with_cp_matches_plain_forward_and_grads():
    torch.manual_seed(0)
    plain = S2MLP(arch=SMALL)
    ckpt = S2MLP(arch=SMALL, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    (a, ), (b, ) = plain(x), ckpt(x)
    torch.testing.assert_close(a, b)
    a.sum().backward()
    b.sum().backward()
    for (n, pa), pb in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=n)


def test_drop_path_and_layer_depth():
    model = S2MLP(arch=SMALL, drop_path_rate=0.1)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in model.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.1, 3))
    n = SMALL['num_blocks'] + 2
    depth = model.get_layer_depth
    assert depth('backbone.patch_embed.norm.weight', 'backbone.') == (0, n)
    assert depth('backbone.blocks.1.spatial_mlp.fc1.weight', 'backbone.') == (2, n)
    assert depth('backbone.norm.bias', 'backbone.') == (n - 1, n)
    assert depth('head.fc.bias', 'backbone.') == (n - 1, n)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='tiny'), r"S2MLP: arch='tiny' is not a preset.*deep"),
    (dict(arch=dict(embed_dims=8, num_blocks=1, groups=4)),
     r"unknown keys \['groups'\]"),
    (dict(arch=dict(embed_dims=8)), r"missing keys \['num_blocks'\]"),
    (dict(arch=SMALL, out_indices=(-4, )), r'out_indices=\(-4,\) contains -4'),
    (dict(arch=SMALL, with_pyramid=True, out_indices=(0, 5)),
     r'out_indices=\(0, 5\) contains 5.*\[-4, 3\]'),
    (dict(arch=SMALL, frozen_stages=5), 'frozen_stages=5 is out of range'),
    (dict(arch=dict(embed_dims=8, num_blocks=1, mlp_ratio=0)), 'mlp_ratio=0'),
    (dict(arch=SMALL, in_channels=0), 'in_channels=0'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        S2MLP(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.randn(1, 1, 3, 64, 64), r'4-D.*\(1, 1, 3, 64, 64\)'),
    (torch.randn(1, 1, 64, 64), r'1 channels.*in_channels=3'),
    (torch.randn(1, 3, 64, 20), r'64x20 is too small.*at least 32'),
])
def test_bad_inputs(x, match):
    with pytest.raises(ValueError, match=match):
        S2MLP(arch=SMALL)(x)
    with pytest.raises(ValueError, match='spatial_shift: input must be'):
        spatial_shift(torch.randn(4, 4, 4))


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(arch=SMALL, img_size='224'), TypeError,
     r"S2MLP: img_size='224' must be an int or a \(height, width\) pair of ints"),
    (dict(arch=SMALL, img_size=(224, )), TypeError, 'got a tuple of length 1'),
    (dict(arch=dict(SMALL, mlp_ratio='3')), TypeError,
     "S2MLP: mlp_ratio='3' must be a positive number .*got str"),
    (dict(arch=dict(SMALL, embed_dims=16.9)), TypeError,
     'embed_dims=16.9 must be a positive int, got float'),
    (dict(arch=SMALL, out_indices=True), TypeError,
     r'S2MLP: out_indices=True is not accepted \(got bool\)'),
    (dict(arch=SMALL, final_norm='False'), TypeError,
     "final_norm='False' must be True or False"),
    # the norms act on the last dimension of (B, H, W, C) maps: LayerNorm only
    (dict(arch=SMALL, norm_cfg=dict(type='GN')), ValueError,
     r"S2MLP: norm_cfg=\{'type': 'GN'\} is not accepted .*accepted: "
     r"dict\(type='LN'\).*last dimension"),
    (dict(arch=SMALL, norm_cfg=dict(type='BN')), ValueError,
     r'\(a BatchNorm2d\) is not accepted'),
])
def test_arguments_are_checked_not_coerced(kwargs, error, match):
    with pytest.raises(error, match=match):
        S2MLP(**kwargs)


def test_empty_batch_other_dtype_and_batch_of_one():
    model = S2MLP(arch=SMALL)
    with pytest.raises(ValueError, match=r'S2MLP: input has a batch of 0 images'):
        model(torch.randn(0, 3, 64, 64))
    with pytest.raises(TypeError, match=r'S2MLP: input dtype torch.float16 does not '
                       r"match the model's weights \(torch.float32\).*autocast"):
        model(torch.randn(2, 3, 64, 64).half())
    x = torch.randn(1, 3, 32, 32)
    bn = S2MLP(arch=SMALL, with_pyramid=True, pyramid_cfg=dict(norm_cfg=dict(type='BN')))
    with pytest.raises(ValueError, match=r'S2MLP: a batch of 1 image of 32x32 .*'
                       r'BatchNorm layers of pyramid level 3'):
        bn.train()(x)
    assert S2MLP(arch=SMALL, with_pyramid=True).train()(x)[3].shape == (1, 16, 1, 1)


@pytest.mark.parametrize('with_pyramid', [False, True])
def test_parameters_to_vector(with_pyramid):
    model = S2MLP(arch=SMALL, with_pyramid=with_pyramid)
    sum(o.mean() for o in model(torch.randn(2, 3, 64, 96))).backward()
    params = list(model.parameters())
    vec = torch.nn.utils.parameters_to_vector(params)
    assert vec.numel() == sum(p.numel() for p in params)
    assert torch.isfinite(torch.nn.utils.parameters_to_vector(
        [p.grad for p in params])).all()
