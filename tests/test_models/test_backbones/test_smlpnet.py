import copy

import pytest
import torch
from mmengine.runner import load_checkpoint, save_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.models import SMLPNet
from mmsmlp.models.utils import resize_token_mixing

SMALL = dict(embed_dims=16, depths=[1, 1, 2, 1], mlp_ratio=2)


def _randomise_bn(model):
    """Give BatchNorms non-trivial statistics so eval outputs depend on them."""
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize('size', [(224, 224), (800, 1216), (513, 771), (65, 97)])
def test_pyramid_outputs_at_any_size(size):
    model = SMLPNet(arch=SMALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert len(outs) == 4
    for i, out in enumerate(outs):
        stride = 4 * 2**i
        assert out.shape == (1, 16 * 2**i, -(-size[0] // stride), -(-size[1] // stride))
        assert torch.isfinite(out).all()


def test_tiny_preset_channels_and_grids():
    model = SMLPNet('tiny')
    assert model.num_features == [80, 160, 320, 640]
    grids = [(s.blocks[0].sparse_mlp.mix_height.grid_size[0],
              s.blocks[0].sparse_mlp.mix_width.grid_size[0]) for s in model.stages]
    assert grids == [(56, 56), (28, 28), (14, 14), (7, 7)]
    rect = SMLPNet(arch=SMALL, img_size=(128, 192))
    assert rect.stages[0].blocks[0].sparse_mlp.mix_height.grid_size == (32, )
    assert rect.stages[0].blocks[0].sparse_mlp.mix_width.grid_size == (48, )


def test_reference_size_uses_stored_weights_bit_for_bit(monkeypatch):
    """At the reference size no resampling happens: each axial mixing is exactly
    ``W x + b`` with the stored tensors."""
    from mmsmlp.models.utils import token_mixing
    model = SMLPNet(arch=SMALL).eval()
    calls = []
    orig = token_mixing.interpolation_matrix
    monkeypatch.setattr(token_mixing, 'interpolation_matrix',
                        lambda *a, **k: calls.append(a) or orig(*a, **k))
    mix = model.stages[0].blocks[0].sparse_mlp.mix_width
    t = torch.randn(2, 56, 56, 16)
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
        got = mix(t, dim=2)
    assert calls == []
    want = (mix.weight @ t.reshape(112, 56, 16) + mix.bias.view(56, 1)).view(t.shape)
    assert torch.equal(got, want)


def test_gradients_reach_axial_weights_at_other_sizes():
    model = SMLPNet(arch=SMALL)
    outs = model(torch.randn(2, 3, 160, 96))
    sum(o.mean() for o in outs).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    mix = model.stages[2].blocks[1].sparse_mlp.mix_height
    assert mix.weight.grad.abs().sum() > 0


def test_checkpoint_at_other_resolution_is_resized_on_load(tmp_path):
    """A 224 checkpoint loaded into a 384 model computes at 384 what the 224 model
    computes at 384 (the same resizing, once on load instead of every forward)."""
    torch.manual_seed(0)
    m224 = SMLPNet(arch=SMALL, img_size=224).eval()
    _randomise_bn(m224)
    path = tmp_path / 'm224.pth'
    save_checkpoint(m224.state_dict(), str(path))
    m384 = SMLPNet(arch=SMALL, img_size=384).eval()
    load_checkpoint(m384, str(path), strict=True)
    mix224 = m224.stages[0].blocks[0].sparse_mlp.mix_width
    mix384 = m384.stages[0].blocks[0].sparse_mlp.mix_width
    assert mix384.weight.shape == (96, 96)
    torch.testing.assert_close(
        mix384.weight.detach(),
        resize_token_mixing(mix224.weight.detach(), None, (56, ), (96, ))[0])
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        for a, b in zip(m224(x), m384(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_init_cfg_pretrained_with_prefix(tmp_path):
    src = SMLPNet(arch=SMALL, img_size=160)
    ckpt = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    ckpt['head.fc.weight'] = torch.zeros(3, 128)
    path = tmp_path / 'cls.pth'
    torch.save({'state_dict': ckpt}, path)
    dst = SMLPNet(arch=SMALL, img_size=224, init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    dst.init_weights()
    sd = dst.state_dict()
    torch.testing.assert_close(sd['stages.3.blocks.0.channel_mlp.fc1.weight'],
                               src.state_dict()['stages.3.blocks.0.channel_mlp.fc1.weight'])
    assert sd['stages.0.blocks.0.sparse_mlp.mix_height.weight'].shape == (56, 56)


def test_unreconcilable_checkpoint_names_key_and_shapes():
    small = SMLPNet(arch=SMALL)
    other = SMLPNet(arch=dict(embed_dims=24, depths=[1, 1, 2, 1]))
    with pytest.raises(ValueError, match=r"'patch_embed.projection.weight'.*"
                       r'\(24, 3, 4, 4\).*\(16, 3, 4, 4\)'):
        small.load_state_dict(other.state_dict(), strict=False)


def test_frozen_stages_survive_train():
    model = SMLPNet(arch=SMALL, frozen_stages=1)
    model.train()
    for p in model.patch_embed.parameters():
        assert not p.requires_grad
    for i in range(4):
        frozen = i <= 1
        for p in model.stages[i].parameters():
            assert p.requires_grad != frozen
        for m in model.stages[i].modules():
            if isinstance(m, _BatchNorm):
                assert m.training != frozen
        for p in getattr(model, f'norm{i}').parameters():
            assert p.requires_grad != frozen
    # frozen weights do not move in a training step
    before = copy.deepcopy(model.stages[0].state_dict())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(o.mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    opt.step()
    for k, v in model.stages[0].state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_norm_eval_keeps_bn_in_eval():
    model = SMLPNet(arch=SMALL, norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    stats = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(bns[0].running_mean, stats)


def test_syncbn_norm_cfg_and_out_norms():
    model = SMLPNet(arch=SMALL, norm_cfg=dict(type='SyncBN'), out_indices=(1, 3))
    assert type(model.stages[0].blocks[0].local_norm).__name__ == 'SyncBatchNorm'
    assert type(model.norm3).__name__ == 'SyncBatchNorm'
    assert not hasattr(model, 'norm0')
    no_norm = SMLPNet(arch=SMALL, out_indices=-1, out_norm=False).eval()
    assert no_norm.out_indices == (3, )
    assert isinstance(no_norm.norm3, torch.nn.Identity)


def test_with_cp_matches_plain_forward_and_grads():
    torch.manual_seed(0)
    plain = SMLPNet(arch=SMALL)
    ckpt = SMLPNet(arch=SMALL, with_cp=True)
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
    model = SMLPNet(arch=SMALL, drop_path_rate=0.2)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for s in model.stages
             for b in s.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.2, 5))


def test_get_layer_depth():
    model = SMLPNet(arch=SMALL)
    n = sum(SMALL['depths']) + 2
    assert model.get_layer_depth('backbone.patch_embed.projection.weight',
                                 'backbone.') == (0, n)
    assert model.get_layer_depth('backbone.stages.0.blocks.0.local_mix.weight',
                                 'backbone.') == (1, n)
    assert model.get_layer_depth('backbone.stages.2.downsample.projection.weight',
                                 'backbone.') == (2, n)
    assert model.get_layer_depth('backbone.stages.2.blocks.1.fuse.weight',
                                 'backbone.') == (4, n)
    assert model.get_layer_depth('backbone.norm3.weight', 'backbone.') == (n - 1, n)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (n - 1, n)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), r"arch='huge' is not a preset.*tiny"),
    (dict(arch=dict(embed_dims=8, depths=[1], heads=2)), r"unknown keys \['heads'\]"),
    (dict(arch=dict(depths=[1, 1])), r"missing keys \['embed_dims'\]"),
    (dict(arch=SMALL, out_indices=(0, 4)), r'out_indices=\(0, 4\) contains 4.*\[-4, 3\]'),
    (dict(arch=SMALL, frozen_stages=4), r'frozen_stages=4 is out of range.*-1.*3'),
    (dict(arch=SMALL, drop_path_rate=1.5), 'drop_path_rate=1.5'),
    (dict(arch=SMALL, interpolate_mode='linear3d'), "interpolate_mode='linear3d'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SMLPNet(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.randn(3, 64, 64), r'4-D.*\(3, 64, 64\)'),
    (torch.randn(1, 4, 64, 64), r'4 channels.*in_channels=3'),
    (torch.randn(1, 3, 31, 64), r'31x64 is too small.*at least 32'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), 'floating-point.*uint8'),
    (torch.full((1, 3, 64, 64), float('nan')), r'\(1, 3, 64, 64\) contains NaN'),
])
def test_bad_inputs(x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SMLPNet(arch=SMALL)(x)


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    model = SMLPNet(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=missing))
    with pytest.raises(FileNotFoundError, match=r'init_cfg checkpoint .*nope.pth.* does '
                       'not exist'):
        model.init_weights()


def test_out_norm_on_chosen_outputs_only():
    model = SMLPNet(arch=SMALL, out_norm=(3, ))
    assert isinstance(model.norm0, torch.nn.Identity)
    assert isinstance(model.norm3, _BatchNorm)
    # a classifier checkpoint (final norm only) fills this backbone exactly
    cls = SMLPNet(arch=SMALL, out_indices=(3, ))
    missing, unexpected = model.load_state_dict(cls.state_dict(), strict=False)
    assert missing == [] and unexpected == []
    with pytest.raises(ValueError, match=r'out_norm=\(2,\).*out_indices=\(3,\)'):
        SMLPNet(arch=SMALL, out_indices=(3, ), out_norm=(2, ))


def test_checkpoint_of_another_model_or_wrong_prefix():
    model = SMLPNet(arch=SMALL)
    with pytest.raises(ValueError, match=r"none of the keys of SMLPNet under the prefix "
                       r"''.*'backbone.stages"):
        model.load_state_dict({f'backbone.{k}': v for k, v in model.state_dict().items()},
                              strict=False)


@pytest.mark.parametrize('content,match', [(b'', 'empty'),
                                           (b'PK\x03\x04garbage', 'truncated or corrupt')])
def test_unreadable_pretrained_file_is_named(tmp_path, content, match):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(content)
    model = SMLPNet(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(bad)))
    with pytest.raises(ValueError, match=f'bad.pth.*{match}'):
        model.init_weights()


def test_unknown_config_key():
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
            MODELS.build(dict(type='SMLPNet', arch=SMALL, foo=1))


@pytest.mark.parametrize('kwargs,error,match', [
    # types Python would coerce silently: a bool is an int, a str a sequence
    (dict(arch=SMALL, out_indices=True), TypeError,
     r'out_indices=True is not accepted \(got bool\); accepted: an int or a '
     r'non-empty list / tuple of ints in \[-4, 3\]'),
    (dict(arch=SMALL, out_indices='03'), TypeError, r"out_indices='03'.*got str"),
    (dict(arch=dict(SMALL, embed_dims=16.9)), TypeError,
     'embed_dims=16.9 must be a positive int, got float'),
    (dict(arch=dict(SMALL, embed_dims=True)), TypeError,
     'embed_dims=True must be a positive int, got bool'),
    (dict(arch=dict(SMALL, depths='1111')), TypeError,
     "depths='1111' must be a non-empty list / tuple of positive ints, got str"),
    (dict(arch=dict(SMALL, depths=[1, 0])), ValueError, r'depths=\[1, 0\] contains 0'),
    (dict(arch=SMALL, frozen_stages=True), TypeError, 'frozen_stages=True.*got bool'),
    (dict(arch=SMALL, in_channels='3'), TypeError, "in_channels='3'.*got str"),
    (dict(arch=SMALL, norm_eval='False'), TypeError,
     "norm_eval='False' must be True or False, got str"),
    (dict(arch=SMALL, smlp_stages='01'), TypeError, "smlp_stages='01'"),
    (dict(arch=SMALL, out_indices=(3, ), out_norm=2), ValueError,
     r'out_norm=2 names stages that are not in out_indices=\(3,\)'),
    # img_size: an int or a (height, width) pair of ints
    (dict(arch=SMALL, img_size='224'), TypeError,
     r"img_size='224' must be an int or a \(height, width\) pair of ints, got str"),
    (dict(arch=SMALL, img_size=(224, )), TypeError,
     r'img_size=\(224,\) must be .* got a tuple of length 1'),
    (dict(arch=SMALL, img_size=(224, 31)), ValueError, 'must be at least 32'),
    # mlp_ratio: a positive number that leaves the channel MLP a hidden channel
    (dict(arch=dict(SMALL, mlp_ratio='3')), TypeError,
     "mlp_ratio='3' must be a positive number .*got str"),
    (dict(arch=dict(SMALL, mlp_ratio=0)), ValueError,
     'mlp_ratio=0 must be a positive, finite number'),
    (dict(arch=dict(SMALL, mlp_ratio=0.01)), ValueError,
     r'mlp_ratio=0.01 leaves the channel MLP no hidden channel'),
    (dict(arch=SMALL, drop_path_rate='0.1'), TypeError, "drop_path_rate='0.1'"),
    # norms: BatchNorms for the token mixing and outputs, LayerNorm for channels
    (dict(arch=SMALL, norm_cfg=dict(type='GN')), ValueError,
     r"norm_cfg=\{'type': 'GN'\} is not accepted .*accepted: dict\(type='BN'\) or "
     r"dict\(type='SyncBN'\).*running statistics"),
    (dict(arch=SMALL, norm_cfg=dict(type='GN', num_groups=4)), ValueError,
     r'\(a GroupNorm\) is not accepted'),
    (dict(arch=SMALL, norm_cfg=dict(type='LN')), ValueError, r'\(a LayerNorm\) is not'),
    (dict(arch=SMALL, norm_cfg='BN'), TypeError, "must be a dict with a 'type' key"),
    (dict(arch=SMALL, channel_norm_cfg=dict(type='BN')), ValueError,
     r"channel_norm_cfg=\{'type': 'BN'\} \(a BatchNorm2d\) is not accepted; "
     r"accepted: dict\(type='LN'\)"),
])
def test_arguments_are_checked_not_coerced(kwargs, error, match):
    with pytest.raises(error, match=match):
        SMLPNet(**kwargs)


def test_accepted_argument_forms():
    model = SMLPNet(arch=dict(SMALL, depths=(1, 1, 2, 1), mlp_ratio=2.5),
                    img_size=[128, 192], out_indices=-1, norm_cfg=dict(type='BN2d'))
    assert model.img_size == (128, 192) and model.out_indices == (3, )
    assert model.depths == [1, 1, 2, 1] and model.mlp_ratio == 2.5


def test_empty_batch_is_refused():
    with pytest.raises(ValueError, match=r'SMLPNet: input has a batch of 0 images '
                       r'\(shape \(0, 3, 64, 64\)\)'):
        SMLPNet(arch=SMALL)(torch.randn(0, 3, 64, 64))


def test_batch_of_one_with_a_1x1_map_in_training():
    """A batch of 1 at 32 x 32 leaves the stride-32 BatchNorms one value per
    channel: refused before running, only where such a BatchNorm normalises with
    batch statistics."""
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r'SMLPNet: a batch of 1 image of 32x32 leaves '
                       r'one value per channel \(a 1x1 map at stride 32\) for the '
                       r'BatchNorm layers of stage 3.*batch of at least 2.*side larger '
                       r'than 32.*norm_eval=True, or model.eval\(\)'):
        SMLPNet(arch=SMALL).train()(x)
    # without the output norm, the blocks of stage 3 still have BatchNorms
    with pytest.raises(ValueError, match='stage 3'):
        SMLPNet(arch=SMALL, out_indices=(0, 1, 2)).train()(x)
    # no BatchNorm uses batch statistics, or none sees a 1x1 map: runs
    for model, inp in [(SMLPNet(arch=SMALL).eval(), x),
                       (SMLPNet(arch=SMALL, norm_eval=True).train(), x),
                       (SMLPNet(arch=SMALL, frozen_stages=3).train(), x),
                       (SMLPNet(arch=SMALL).train(), torch.randn(2, 3, 32, 32)),
                       (SMLPNet(arch=SMALL).train(), torch.randn(1, 3, 32, 33)),
                       (SMLPNet(arch=SMALL).train(), torch.randn(1, 3, 63, 63))]:
        outs = model(inp)
        assert outs[-1].shape[:2] == (inp.shape[0], 128)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float64])
def test_input_dtype_other_than_the_weights(dtype):
    model = SMLPNet(arch=SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    match = (f"SMLPNet: input dtype {dtype} does not match the model's weights "
             rf'\(torch.float32\); convert the input \(x.to\(torch.float32\)\) or '
             rf'the model \(model.to\({dtype}\)\)')
    if dtype != torch.float64:
        match += rf".*torch.autocast\('cpu', dtype={dtype}\)"
    with pytest.raises(TypeError, match=match):
        model(x.to(dtype))
    if dtype == torch.bfloat16:  # autocast is the way: the same input works
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            outs = model(x.to(dtype))
        assert all(torch.isfinite(o.float()).all() for o in outs)
    # a model converted to that dtype takes it
    if dtype != torch.float16:  # no fp16 convolution on the CPU in torch 2.1
        assert model.to(dtype)(x.to(dtype))[0].dtype == dtype


def test_init_cfg_empty_prefix_means_no_prefix(tmp_path):
    """mmengine appends '.' to any prefix, so prefix='' used to match no key (an
    AssertionError); it loads the keys as they are, as prefix=None does."""
    src = SMLPNet(arch=SMALL)
    path = tmp_path / 'backbone.pth'
    torch.save({'state_dict': src.state_dict()}, path)
    init_cfg = dict(type='Pretrained', checkpoint=str(path), prefix='')
    dst = SMLPNet(arch=SMALL, init_cfg=init_cfg)
    dst.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, msg=k)
    assert init_cfg['prefix'] == ''  # the caller's dict is left alone


def test_init_cfg_prefix_matching_no_key_is_named(tmp_path):
    src = SMLPNet(arch=SMALL)
    path = tmp_path / 'backbone.pth'
    torch.save({'state_dict': src.state_dict()}, path)
    dst = SMLPNet(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                            prefix='backbone.'))
    with pytest.raises(ValueError, match=r"SMLPNet: init_cfg prefix 'backbone.' matches "
                       r"no key of checkpoint '.*backbone.pth' \(its first keys: "
                       r"\['patch_embed.projection.weight'"):
        dst.init_weights()
    with pytest.raises(TypeError, match=r'init_cfg prefix=1 must be a str'):
        SMLPNet(arch=SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                          prefix=1)).init_weights()


def test_parameters_to_vector():
    """Every parameter (and its gradient) is contiguous, as
    ``parameters_to_vector`` needs, also after a training step on channels-last
    activations."""
    model = SMLPNet(arch=SMALL)
    sum(o.mean() for o in model(torch.randn(2, 3, 64, 96))).backward()
    params = list(model.parameters())
    vec = torch.nn.utils.parameters_to_vector(params)
    assert vec.numel() == sum(p.numel() for p in params)
    grads = torch.nn.utils.parameters_to_vector([p.grad for p in params])
    assert torch.isfinite(grads).all()
    torch.nn.utils.vector_to_parameters(vec * 2, params)
    torch.testing.assert_close(torch.nn.utils.parameters_to_vector(params), vec * 2)
