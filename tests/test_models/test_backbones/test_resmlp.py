"""ResMLP backbone: shapes at any size, timm equivalence, exactness at the reference
grid, params / FLOPs of the presets, switches and errors."""
import pytest
import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint, save_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.models import ResMLP
from mmsmlp.models.backbones.resmlp import Affine, default_layer_scale

SMALL = dict(embed_dims=16, num_blocks=3, mlp_ratio=2)
SIZES = [(224, 224), (513, 771), (65, 97)]


def _randomise(model, seed=0):
    """Affine and LayerScale away from their init, so that every branch counts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('alpha'):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith('beta'):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif name.endswith(('ls1', 'ls2')):
                p.copy_(torch.rand(p.shape, generator=g) * 0.3 + 0.05)
    return model


@pytest.mark.parametrize('size', SIZES)
def test_block_and_pyramid_outputs_at_any_size(size):
    x = torch.randn(1, 3, *size)
    model = ResMLP(arch=SMALL).eval()
    pyr = ResMLP(arch=SMALL, with_pyramid=True).eval()
    with torch.no_grad():
        (out, ) = model(x)
        levels = pyr(x)
    assert out.shape == (1, 16, -(-size[0] // 16), -(-size[1] // 16))
    assert len(levels) == 4
    for i, level in enumerate(levels):
        stride = 4 * 2**i
        assert level.shape == (1, 16, -(-size[0] // stride), -(-size[1] // stride))
        assert torch.isfinite(level).all()
    assert pyr.num_features == [16] * 4 and pyr.out_strides == [4, 8, 16, 32]


def test_patch8_pyramid_and_custom_channels():
    model = ResMLP(arch=dict(embed_dims=16, num_blocks=2, patch_size=8),
                   with_pyramid=True, out_indices=(1, 2, 3),
                   pyramid_cfg=dict(out_channels=[8, 16, 24, 32])).eval()
    assert model.grid_size == (28, 28)
    assert model.pyramid.scales == (2.0, 1.0, 0.5, 0.25)
    assert model.num_features == [16, 24, 32]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 100, 70))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 13, 9), (1, 24, 7, 5),
                                              (1, 32, 4, 3)]


def test_presets():
    zoo = ResMLP.arch_zoo
    assert [zoo[a]['num_blocks'] for a in ('s12', 's24', 's36', 'b24')] == \
        [12, 24, 36, 24]
    assert zoo['b24']['patch_size'] == 8 and zoo['b24']['embed_dims'] == 768
    # timm: ResBlock default 1e-4 (resmlp_12), 1e-5 (24), 1e-6 (36 and big_24)
    assert [zoo[a]['layer_scale_init'] for a in ('s12', 's24', 's36', 'b24')] == \
        [1e-4, 1e-5, 1e-6, 1e-6]
    assert [default_layer_scale(d) for d in (2, 12, 18, 24, 36)] == \
        [1e-4, 1e-4, 1e-5, 1e-5, 1e-6]
    model = ResMLP(arch=dict(embed_dims=8, num_blocks=2, layer_scale_init=0.1))
    assert torch.all(model.blocks[1].ls2 == 0.1)
    assert model.blocks[0].token_mix.grid_size == (14, 14)
    rect = ResMLP(arch=dict(embed_dims=8, num_blocks=1), img_size=(128, 192))
    assert rect.blocks[0].token_mix.grid_size == (8, 12)


def _timm_small(img_size=64, patch=16, seed=0):
    from timm.models.mlp_mixer import Affine as TimmAffine
    from timm.models.mlp_mixer import MlpMixer, ResBlock
    torch.manual_seed(seed)
    model = MlpMixer(num_classes=0, img_size=img_size, patch_size=patch,
                     num_blocks=SMALL['num_blocks'], embed_dim=SMALL['embed_dims'],
                     mlp_ratio=SMALL['mlp_ratio'], block_layer=ResBlock,
                     norm_layer=TimmAffine)
    return _randomise(model, seed).eval()


def _from_timm(timm_model, **kwargs):
    """Our backbone with the timm model's weights (the converter's mapping)."""
    ours = ResMLP(arch=SMALL, **kwargs).eval()
    state = {}
    for k, v in timm_model.state_dict().items():
        k = k.replace('stem.proj.', 'patch_embed.projection.')
        k = k.replace('linear_tokens.', 'token_mix.').replace('mlp_channels.',
                                                              'channel_mlp.')
        state[k] = v.reshape(-1) if k.endswith(('alpha', 'beta')) else v
    ours.load_state_dict(state, strict=True)
    return ours


def test_same_function_as_timm_at_the_reference_size():
    timm_model = _timm_small(img_size=64)
    ours = _from_timm(timm_model, img_size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = timm_model.forward_features(x)  # (B, N, C), final Affine applied
        (out, ) = ours(x)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), ref, rtol=0,
                               atol=1e-5)


def test_reference_grid_uses_stored_weights_bit_for_bit(monkeypatch):
    """At the reference grid (also after padding to it) no resampling happens: the
    block's mixing is exactly ``W x + b`` with the stored tensors."""
    from mmsmlp.models.utils import token_mixing
    model = _randomise(ResMLP(arch=SMALL)).eval()
    calls = []
    orig = token_mixing.interpolation_matrix
    monkeypatch.setattr(token_mixing, 'interpolation_matrix',
                        lambda *a, **k: calls.append(a) or orig(*a, **k))
    mix = model.blocks[0].token_mix
    t = torch.randn(2, 14, 14, 16)
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))  # grid (14, 14)
        model(torch.randn(1, 3, 209, 222))  # padded to 224 x 224: same grid
        got = mix(t, dim=1)
    assert calls == []
    want = (mix.weight @ t.reshape(2, 196, 16) + mix.bias.view(196, 1)).view(t.shape)
    assert torch.equal(got, want)


def test_other_sizes_resize_the_mixing_like_a_resized_checkpoint():
    """At 320 the 224 model computes what a 320 model computes after loading the
    224 weights (resized once on load, as a kernel over (H, W) x (H, W))."""
    torch.manual_seed(0)
    m224 = _randomise(ResMLP(arch=SMALL, img_size=224)).eval()
    m320 = ResMLP(arch=SMALL, img_size=320).eval()
    m320.load_state_dict(m224.state_dict())
    assert m320.blocks[0].token_mix.weight.shape == (400, 400)
    x = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        torch.testing.assert_close(m224(x)[0], m320(x)[0])


def test_gradients_reach_all_parameters_at_other_sizes():
    model = ResMLP(arch=SMALL, with_pyramid=True)
    outs = model(torch.randn(2, 3, 96, 160))
    sum(o.mean() for o in outs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_intermediate_block_outputs_are_not_normalised():
    model = _randomise(ResMLP(arch=SMALL, out_indices=(0, 2))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first, last = model(x)
        t = model.patch_embed(x).permute(0, 2, 3, 1)
        t = model.blocks[0](t)
        torch.testing.assert_close(first, t.permute(0, 3, 1, 2))
        for blk in model.blocks[1:]:
            t = blk(t)
        torch.testing.assert_close(last, model.norm(t).permute(0, 3, 1, 2))


def test_classifier_at_any_size():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cls = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='ResMLP', arch=SMALL),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=5, in_channels=16))).eval()
    with torch.no_grad():
        for size in [(224, 224), (150, 260)]:
            assert cls(torch.randn(2, 3, *size), mode='tensor').shape == (2, 5)


# ----------------------------------------------------------------------- counts
# arch: (C, params in M, GFLOPs at 224); the facts file / paper: 15.4M 3.0G,
# 30.0M 6.0G, 44.7M 8.9G (mmengine counts one multiply-add as one FLOP)
TABLE = {
    's12': (384, 15.35, 3.01),
    's24': (384, 30.02, 5.96),
    's36': (384, 44.69, 8.91),
}


def _classifier(arch, channels):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='ResMLP', arch=arch),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=channels))).eval()


@pytest.mark.parametrize('arch', list(TABLE))
def test_params_and_flops_match_the_paper(arch):
    channels, params_m, gflops = TABLE[arch]
    model = _classifier(arch, channels)
    assert abs(parameter_count(model)[''] / 1e6 - params_m) < 0.01
    analyzer = FlopAnalyzer(model, torch.randn(1, 3, 224, 224))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    assert abs(analyzer.total() / 1e9 - gflops) < 0.01
    # every product is counted: only element-wise ops, the corner padding and
    # the arithmetic on the traced size that computes it are left
    assert set(analyzer.unsupported_ops()) <= {'aten::add', 'aten::addcmul',
                                               'aten::mul', 'aten::gelu', 'aten::pad',
                                               'aten::neg', 'aten::sub'}


def test_b24_params():
    # 129.14M measured (FLOPs 100.23G, not run here: 11 s)
    assert abs(parameter_count(_classifier('b24', 768))[''] / 1e6 - 129.14) < 0.01


# --------------------------------------------------------------------- switches
def test_init_weights_and_pretrained_with_prefix(tmp_path):
    torch.manual_seed(0)
    model = ResMLP(arch=SMALL)
    model.init_weights()
    w = model.blocks[0].token_mix.weight
    assert 0.015 < w.std() < 0.025  # truncated normal, std 0.02 (Linear-like init: 0.04)
    assert torch.all(model.blocks[0].token_mix.bias == 0)
    assert torch.all(model.blocks[0].norm1.alpha == 1)
    assert torch.all(model.blocks[0].ls1 == 1e-4)

    _randomise(model, seed=1)
    ckpt = tmp_path / 'cls.pth'
    save_checkpoint({f'backbone.{k}': v for k, v in model.state_dict().items()},
                    str(ckpt))
    fresh = ResMLP(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt),
                                             prefix='backbone.'))
    fresh.init_weights()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, msg=k)
    other = ResMLP(arch=dict(embed_dims=8, num_blocks=3))
    with pytest.raises(ValueError, match=r"'patch_embed.projection.weight' "
                       r'has shape \(16, 3, 16, 16\).*\(8, 3, 16, 16\)'):
        load_checkpoint(other, str(ckpt), revise_keys=[(r'^backbone\.', '')])


def test_frozen_stages_survive_train():
    model = ResMLP(arch=SMALL, frozen_stages=1, with_pyramid=True,
                   pyramid_cfg=dict(norm_cfg=dict(type='BN')))
    model.train()
    frozen = [model.patch_embed, model.blocks[0], model.blocks[1]]
    for m in frozen:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    assert model.blocks[2].training and model.norm.alpha.requires_grad
    assert all(p.requires_grad for p in model.pyramid.parameters())
    everything = ResMLP(arch=SMALL, frozen_stages=2)
    assert not everything.norm.alpha.requires_grad
    assert ResMLP(arch=SMALL, frozen_stages=-1).patch_embed.projection.weight \
        .requires_grad


def test_norm_eval_keeps_bn_in_eval():
    model = ResMLP(arch=SMALL, with_pyramid=True, norm_eval=True,
                   pyramid_cfg=dict(norm_cfg=dict(type='BN')))
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    stats = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(bns[0].running_mean, stats)


def test_with_cp_matches_plain_forward_and_grads():
    torch.manual_seed(0)
    plain = _randomise(ResMLP(arch=SMALL, with_pyramid=True))
    ckpt = ResMLP(arch=SMALL, with_pyramid=True, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    out_a, out_b = plain(x), ckpt(x)
    for a, b in zip(out_a, out_b):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in out_a).backward()
    sum(o.sum() for o in out_b).backward()
    for (n, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=n)


def test_drop_path_grows_linearly():
    model = ResMLP(arch=SMALL, drop_path_rate=0.2)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in model.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.2, 3))


def test_get_layer_depth():
    model = ResMLP(arch=SMALL, with_pyramid=True)
    n = SMALL['num_blocks'] + 2
    assert model.get_layer_depth('backbone.patch_embed.projection.weight',
                                 'backbone.') == (0, n)
    assert model.get_layer_depth('backbone.blocks.0.token_mix.weight',
                                 'backbone.') == (1, n)
    assert model.get_layer_depth('backbone.blocks.2.ls2', 'backbone.') == (3, n)
    assert model.get_layer_depth('backbone.norm.alpha', 'backbone.') == (n - 1, n)
    assert model.get_layer_depth('backbone.pyramid.levels.0.norm.weight',
                                 'backbone.') == (n - 1, n)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (n - 1, n)


def test_affine():
    aff = Affine(4)
    with torch.no_grad():
        aff.alpha.copy_(torch.tensor([1., 2., 3., 4.]))
        aff.beta.copy_(torch.tensor([0., 1., 0., -1.]))
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(aff(x), x * aff.alpha + aff.beta)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), r"ResMLP: arch='huge' is not a preset.*s12"),
    (dict(arch=dict(embed_dims=8, num_blocks=1, heads=2)), r"unknown keys \['heads'\]"),
    (dict(arch=dict(num_blocks=2)), r"missing keys \['embed_dims'\]"),
    (dict(arch=dict(embed_dims=8, num_blocks=0)), r'num_blocks=0 must be a positive'),
    (dict(arch=SMALL, out_indices=(0, 3)), r'out_indices=\(0, 3\) contains 3.*\[-3, 2\]'),
    (dict(arch=SMALL, with_pyramid=True, out_indices=(4, )),
     r'out_indices=\(4,\) contains 4.*\[-4, 3\]'),
    (dict(arch=SMALL, with_pyramid=True, pyramid_blocks=(0, 1)),
     r'pyramid_blocks=\(0, 1\) must be one block index or 4'),
    (dict(arch=SMALL, with_pyramid=True, pyramid_blocks=5), r'pyramid_blocks=5'),
    (dict(arch=SMALL, with_pyramid=True, pyramid_cfg=dict(channels=3)),
     r"pyramid_cfg has unknown keys \['channels'\]"),
    (dict(arch=SMALL, pyramid_cfg=dict(out_channels=3)),
     r'pyramid_cfg=\{.out_channels.: 3\}.*with_pyramid=False'),
    (dict(arch=SMALL, pyramid_blocks=1), r'pyramid_blocks=1 are given but with_pyr'),
    (dict(arch=dict(embed_dims=8, num_blocks=1, patch_size=14), with_pyramid=True),
     r'power-of-two patch_size.*patch_size=14'),
    (dict(arch=SMALL, frozen_stages=3), r'frozen_stages=3 is out of range.*-1.*2'),
    (dict(arch=SMALL, drop_path_rate=1.5), 'drop_path_rate=1.5'),
    (dict(arch=SMALL, img_size=16), 'img_size=16 must be at least 32'),
    (dict(arch=SMALL, interpolate_mode='linear3d'), "interpolate_mode='linear3d'"),
    (dict(arch=SMALL, pretrained='open-mmlab://resnet50_v1c'), 'another model'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ResMLP(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.randn(3, 64, 64), r'4-D.*\(3, 64, 64\)'),
    (torch.randn(1, 4, 64, 64), r'4 channels.*in_channels=3'),
    (torch.randn(1, 3, 31, 64), r'31x64 is too small.*at least 32'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), 'floating-point.*uint8'),
])
def test_bad_inputs(x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ResMLP(arch=SMALL)(x)


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    model = ResMLP(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=missing))
    with pytest.raises(FileNotFoundError, match=r'init_cfg checkpoint .*nope.pth.* '
                       'does not exist'):
        model.init_weights()


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(arch=SMALL, img_size='224'), TypeError,
     r"ResMLP: img_size='224' must be an int or a \(height, width\) pair of ints"),
    (dict(arch=SMALL, img_size=(224, )), TypeError, 'got a tuple of length 1'),
    (dict(arch=dict(SMALL, mlp_ratio='3')), TypeError,
     "ResMLP: mlp_ratio='3' must be a positive number .*got str"),
    (dict(arch=dict(SMALL, mlp_ratio=0)), ValueError, 'mlp_ratio=0 must be a positive'),
    (dict(arch=dict(SMALL, embed_dims=16.9)), TypeError,
     'embed_dims=16.9 must be a positive int, got float'),
    (dict(arch=dict(SMALL, num_blocks='3')), TypeError, "num_blocks='3'.*got str"),
    (dict(arch=dict(SMALL, patch_size=True)), TypeError, 'patch_size=True.*got bool'),
    (dict(arch=dict(SMALL, layer_scale_init='1e-4')), TypeError,
     "layer_scale_init='1e-4' must be a positive number"),
    (dict(arch=SMALL, out_indices=True), TypeError,
     r'ResMLP: out_indices=True is not accepted \(got bool\)'),
    (dict(arch=SMALL, with_pyramid='yes'), TypeError,
     "with_pyramid='yes' must be True or False"),
    (dict(arch=SMALL, with_pyramid=True, pyramid_blocks=True), ValueError,
     'pyramid_blocks=True must be one block index'),
    (dict(arch=SMALL, with_pyramid=True, pyramid_cfg=dict(norm_cfg=dict(type='GN'))),
     ValueError, r"pyramid_cfg.norm_cfg=\{'type': 'GN'\} is not accepted .*'GN' "
     r'\(with num_groups\)'),
    (dict(arch=SMALL, with_pyramid=True, pyramid_cfg=dict(norm_cfg=dict(type='BN1d'))),
     ValueError, r'\(a BatchNorm1d\) is not accepted'),
])
def test_arguments_are_checked_not_coerced(kwargs, error, match):
    with pytest.raises(error, match=match):
        ResMLP(**kwargs)


def test_pyramid_norms_that_are_accepted():
    for norm_cfg in (dict(type='BN'), dict(type='GN', num_groups=4), dict(type='LN')):
        model = ResMLP(arch=SMALL, with_pyramid=True, pyramid_cfg=dict(norm_cfg=norm_cfg))
        assert len(model(torch.randn(2, 3, 64, 64))) == 4


def test_empty_batch_and_other_dtype_are_refused():
    model = ResMLP(arch=SMALL)
    with pytest.raises(ValueError, match=r'ResMLP: input has a batch of 0 images'):
        model(torch.randn(0, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(TypeError, match=r'ResMLP: input dtype torch.bfloat16 does not '
                       r"match the model's weights \(torch.float32\)"):
        model(x.bfloat16())
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert torch.isfinite(model(x.bfloat16())[0].float()).all()


def test_batch_of_one_with_a_1x1_batchnorm_map_in_training():
    x = torch.randn(1, 3, 32, 32)
    bn = ResMLP(arch=SMALL, with_pyramid=True, pyramid_cfg=dict(norm_cfg=dict(type='BN')))
    with pytest.raises(ValueError, match=r'ResMLP: a batch of 1 image of 32x32 leaves '
                       r'one value per channel \(a 1x1 map at stride 32\) for the '
                       r'BatchNorm layers of pyramid level 3'):
        bn.train()(x)
    assert bn.eval()(x)[3].shape == (1, 16, 1, 1)
    # LayerNorms (the default) do not depend on the batch
    assert ResMLP(arch=SMALL, with_pyramid=True).train()(x)[3].shape == (1, 16, 1, 1)
    # without level 3, no BatchNorm sees a 1x1 map
    three = ResMLP(arch=SMALL, with_pyramid=True, out_indices=(0, 1, 2),
                   pyramid_cfg=dict(norm_cfg=dict(type='BN')))
    assert three.train()(x)[2].shape == (1, 16, 2, 2)


def test_init_cfg_empty_prefix_means_no_prefix(tmp_path):
    src = _randomise(ResMLP(arch=SMALL))
    path = tmp_path / 'backbone.pth'
    torch.save(src.state_dict(), path)
    dst = ResMLP(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                           prefix=''))
    dst.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, msg=k)


@pytest.mark.parametrize('with_pyramid', [False, True])
def test_parameters_to_vector(with_pyramid):
    model = ResMLP(arch=SMALL, with_pyramid=with_pyramid)
    sum(o.mean() for o in model(torch.randn(2, 3, 64, 96))).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    assert len(params) == len(list(model.parameters()))
    vec = torch.nn.utils.parameters_to_vector(params)
    assert vec.numel() == sum(p.numel() for p in params)
    assert torch.isfinite(torch.nn.utils.parameters_to_vector(
        [p.grad for p in params])).all()
