"""LayerDecayOptimWrapperConstructor: lr decays with the backbone depth reported by
get_layer_depth, and mmengine's paramwise settings keep working."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import LinearLR

from mmsmlp.engine.optimizers import LayerDecayOptimWrapperConstructor
from mmsmlp.models.backbones.smlpnet import SMLPNet

DEPTHS = [1, 1, 2, 1]
NUM_LAYERS = sum(DEPTHS) + 2  # SMLPNet.get_layer_depth: stem, blocks, last
NO_DECAY = {'mix_height.bias': dict(decay_mult=0.), 'mix_width.bias': dict(decay_mult=0.)}


class Segmentor(nn.Module):
    """A backbone and a head with a norm, as in an mmseg EncoderDecoder."""

    def __init__(self, **kw):
        super().__init__()
        self.backbone = SMLPNet(arch=dict(embed_dims=8, depths=DEPTHS), **kw)
        self.head = nn.Sequential(nn.Conv2d(64, 8, 3, padding=1), nn.BatchNorm2d(8),
                                  nn.Conv2d(8, 3, 1))


def build(model, lr=1e-3, wd=0.05, **paramwise):
    return build_optim_wrapper(model, dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=lr, weight_decay=wd),
        constructor='LayerDecayOptimWrapperConstructor',
        paramwise_cfg=paramwise))


def groups_by_name(model, optim_wrapper):
    """{parameter name: its param group} (skips mmengine's base_param_settings)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in optim_wrapper.param_groups:
        assert len(group['params']) == 1
        name = names.get(id(group['params'][0]))
        if name is not None:
            out[name] = group
    return out


def test_lr_decays_toward_the_stem():
    model = Segmentor()
    rate = 0.8
    g = groups_by_name(model, build(model, layer_decay_rate=rate))
    assert len(g) == len(list(model.parameters()))  # every parameter, once

    def lr(name):
        return g[name]['lr']

    top = NUM_LAYERS - 1
    assert lr('head.0.weight') == pytest.approx(1e-3)
    assert lr('backbone.norm3.weight') == pytest.approx(1e-3)
    assert lr('backbone.patch_embed.projection.weight') == pytest.approx(1e-3 * rate**top)
    # block j of stage i has depth sum(depths[:i]) + j + 1
    chain = ['backbone.patch_embed.projection.weight',
             'backbone.stages.0.blocks.0.channel_mlp.fc1.weight',
             'backbone.stages.1.blocks.0.sparse_mlp.mix_width.weight',
             'backbone.stages.2.blocks.0.local_mix.weight',
             'backbone.stages.2.blocks.1.sparse_mlp.fuse.weight',
             'backbone.stages.3.blocks.0.local_norm.weight',
             'head.2.weight']
    lrs = [lr(n) for n in chain]
    assert lrs == sorted(lrs) and len(set(lrs)) == len(lrs), lrs
    for name, group in g.items():
        depth = group['layer_id']
        assert group['lr'] == pytest.approx(1e-3 * rate**(top - depth)), name
        assert group['lr_scale'] == pytest.approx(rate**(top - depth))
    # a downsampling conv shares the depth of the previous stage's last block
    assert g['backbone.stages.2.downsample.projection.weight']['layer_id'] == \
        g['backbone.stages.1.blocks.0.local_mix.weight']['layer_id']


def test_combines_with_paramwise_settings():
    model = Segmentor()
    custom = dict(NO_DECAY, **{'head.2': dict(lr_mult=0.5)})
    g = groups_by_name(model, build(model, layer_decay_rate=0.5, norm_decay_mult=0.,
                                    custom_keys=custom))
    norms = {f'{m}.{p}' for m, mod in model.named_modules()
             if isinstance(mod, (nn.BatchNorm2d, nn.LayerNorm))
             for p, _ in mod.named_parameters()}
    assert 'backbone.norm0.weight' in norms and 'head.1.bias' in norms
    for name, group in g.items():
        is_norm = name in norms
        is_axial_bias = name.endswith(('mix_height.bias', 'mix_width.bias'))
        expected = 0. if is_norm or is_axial_bias else 0.05
        assert group['weight_decay'] == expected, name
    assert g['backbone.stages.0.blocks.0.sparse_mlp.mix_height.weight']['weight_decay'] \
        == 0.05
    # lr_mult of custom_keys and the layer decay multiply
    assert g['head.2.weight']['lr'] == pytest.approx(0.5e-3)
    bias = g['backbone.stages.0.blocks.0.sparse_mlp.mix_width.bias']
    assert bias['lr'] == pytest.approx(1e-3 * 0.5**(NUM_LAYERS - 2))


def test_rate_one_keeps_the_base_lr():
    model = Segmentor()
    g = groups_by_name(model, build(model, layer_decay_rate=1.))
    assert {group['lr'] for group in g.values()} == {1e-3}


def test_bare_backbone_and_frozen_stages():
    backbone = SMLPNet(arch=dict(embed_dims=8, depths=DEPTHS), frozen_stages=0)
    g = groups_by_name(backbone, build(backbone, layer_decay_rate=0.5,
                                       layer_decay_module=''))
    assert not any(n.startswith(('patch_embed', 'stages.0.')) for n in g)  # frozen
    assert g['stages.1.blocks.0.local_mix.weight']['lr'] == \
        pytest.approx(1e-3 * 0.5**(NUM_LAYERS - 1 - 2))


def test_scheduler_keeps_the_ratios():
    model = Segmentor()
    optim_wrapper = build(model, layer_decay_rate=0.5)
    g = groups_by_name(model, optim_wrapper)
    stem = g['backbone.patch_embed.projection.weight']
    head = g['head.0.weight']
    sched = LinearLR(optim_wrapper, start_factor=0.1, by_epoch=False, begin=0, end=10)
    for _ in range(4):
        optim_wrapper.step()
        sched.step()
    assert stem['lr'] / head['lr'] == pytest.approx(0.5**(NUM_LAYERS - 1))
    assert 1e-4 < head['lr'] < 1e-3  # warming up


def test_any_backbone_with_get_layer_depth():
    """mmpretrain's ViT answers get_layer_depth too."""
    from mmpretrain.models import VisionTransformer
    model = nn.Module()
    model.backbone = VisionTransformer(
        arch=dict(embed_dims=16, num_layers=3, num_heads=2, feedforward_channels=32),
        img_size=32, patch_size=16)
    model.head = nn.Linear(16, 2)
    g = groups_by_name(model, build(model, layer_decay_rate=0.5))
    assert g['head.weight']['lr'] == pytest.approx(1e-3)
    assert g['backbone.layers.2.ffn.layers.1.weight']['lr'] > \
        g['backbone.layers.0.ffn.layers.1.weight']['lr'] > \
        g['backbone.patch_embed.projection.weight']['lr']


def test_a_training_step():
    model = Segmentor()
    optim_wrapper = build(model, layer_decay_rate=0.7, norm_decay_mult=0.,
                          custom_keys=NO_DECAY)
    before = model.backbone.patch_embed.projection.weight.detach().clone()
    loss = model.head(model.backbone(torch.randn(2, 3, 64, 64))[-1]).mean()
    optim_wrapper.update_params(loss)
    assert not torch.equal(before, model.backbone.patch_embed.projection.weight)


def test_errors():
    model = Segmentor()
    with pytest.raises(ValueError, match='layer_decay_rate'):
        build(model, layer_decay_rate=1.5)
    with pytest.raises(ValueError, match='layer_decay_rate'):
        build(model, layer_decay_rate=0)
    with pytest.raises(AttributeError, match="no module 'neck'"):
        build(model, layer_decay_rate=0.9, layer_decay_module='neck')
    with pytest.raises(TypeError, match='has no get_layer_depth'):
        build(model, layer_decay_rate=0.9, layer_decay_module='head')
    with pytest.raises(TypeError, match='layer_decay_module'):
        build(model, layer_decay_rate=0.9, layer_decay_module=None)
    with pytest.raises(ValueError, match='explicit lr'):
        LayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(type='AdamW')), dict(layer_decay_rate=0.9))
