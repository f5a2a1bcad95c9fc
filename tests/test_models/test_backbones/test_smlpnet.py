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
