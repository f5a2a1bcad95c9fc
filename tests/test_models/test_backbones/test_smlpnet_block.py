"""The sMLPNet block: sMLP equals the official code's formulation (permute + 1x1
conv per axis, concat, 1x1 fuse); one behaviour whatever the mode (autograd on or
off, forward hooks, activation subclasses, deploy re-parameterisation); no graph
breaks under torch.compile, also with dynamic shapes; safe under bf16 autocast."""
import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS

from mmsmlp.models import SMLPNet
from mmsmlp.models.backbones.smlpnet import SparseMLP
from mmsmlp.testing import OfficialSparseMLP


def paired(channels=8, n=6):
    torch.manual_seed(0)
    official = OfficialSparseMLP(n, channels).eval()
    with torch.no_grad():
        for p in official.parameters():
            p.normal_(0, 0.3)
        official.BN.running_mean.normal_(0, 0.2)
        official.BN.running_var.uniform_(0.5, 1.5)
    ours = SparseMLP(channels, (n, n)).eval()
    ours.mix_width.weight.data.copy_(official.proj_h.weight.view(n, n))
    ours.mix_width.bias.data.copy_(official.proj_h.bias)
    ours.mix_height.weight.data.copy_(official.proh_w.weight.view(n, n))
    ours.mix_height.bias.data.copy_(official.proh_w.bias)
    ours.fuse.weight.data.copy_(official.fuse.weight.view(channels, 3 * channels))
    return official, ours


@pytest.mark.parametrize('channels_last', [False, True])
def test_smlp_equals_the_official_formulation(channels_last):
    official, ours = paired()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        ref = official(x)
        # the official block applies BN + GELU first; ours starts after
        act = torch.nn.functional.gelu(official.BN(x))
        if channels_last:
            act = act.contiguous(memory_format=torch.channels_last)
        out = ours(act.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_is_close_and_finite():
    official, ours = paired(channels=16, n=14)
    x = torch.randn(2, 14, 14, 16)
    with torch.no_grad():
        ref = ours(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = ours(x)
    assert torch.isfinite(low.float()).all()
    torch.testing.assert_close(low.float(), ref, atol=0.1, rtol=0.05)


@pytest.mark.parametrize('dynamic', [False, True])
def test_no_graph_breaks_under_compile(dynamic):
    """One graph for the whole backbone; with the spatial sizes marked dynamic
    (detection inputs of many sizes) too."""
    import torch._dynamo as dynamo
    dynamo.reset()
    model = SMLPNet(arch=dict(embed_dims=8, depths=[1, 1, 1, 1])).eval()
    for size in [(64, 96), (80, 64)]:
        x = torch.randn(1, 3, *size)
        if dynamic:
            dynamo.mark_dynamic(x, 2)
            dynamo.mark_dynamic(x, 3)
        report = dynamo.explain(model)(x)
        assert report.graph_break_count == 0, report.break_reasons
        assert report.graph_count == 1


SMALL = dict(embed_dims=8, depths=[1, 1, 2, 1], mlp_ratio=2)


def _randomised(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize('size', [(64, 64), (72, 104)])
def test_autograd_on_or_off_computes_the_same(size):
    model = _randomised(SMLPNet(arch=SMALL, img_size=64)).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        off = model(x)
    on = model(x.requires_grad_())
    for a, b in zip(off, on):
        assert torch.equal(a, b.detach())


def test_forward_hooks_fire_once_per_call_and_see_what_the_block_uses():
    """Each activation module runs once per block call, with or without
    autograd, and the tensor a hook sees is never overwritten afterwards."""
    model = SMLPNet(arch=SMALL, img_size=64).eval()
    block = model.stages[1].blocks[0]
    seen = {}

    def hook(name):
        def record(module, args, out):
            seen.setdefault(name, []).append((out, out.clone()))
        return record

    for name in ('local_act', 'global_act', 'sparse_mlp', 'channel_norm'):
        getattr(block, name).register_forward_hook(hook(name))
    block.channel_mlp.act.register_forward_hook(hook('mlp_act'))
    block.channel_mlp.fc1.register_forward_hook(hook('fc1'))
    x = torch.randn(1, 3, 64, 64)
    for grad in (False, True):
        seen.clear()
        with torch.set_grad_enabled(grad):
            model(x)
        assert sorted(seen) == sorted(['local_act', 'global_act', 'sparse_mlp',
                                       'channel_norm', 'mlp_act', 'fc1'])
        for name, calls in seen.items():
            assert len(calls) == 1, (name, grad)
            kept, snapshot = calls[0]
            assert torch.equal(kept, snapshot), (name, grad)


@MODELS.register_module(force=True)
class DoubledGELU(nn.GELU):
    """A GELU subclass: the block must call it, not a kernel of its own."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_an_activation_subclass_is_honoured_in_every_mode():
    torch.manual_seed(0)
    plain = SMLPNet(arch=SMALL, img_size=64).eval()
    doubled = SMLPNet(arch=SMALL, img_size=64, act_cfg=dict(type='DoubledGELU')).eval()
    doubled.load_state_dict(plain.state_dict())
    assert isinstance(doubled.stages[0].blocks[0].local_act, DoubledGELU)
    assert isinstance(doubled.stages[0].blocks[0].channel_mlp.act, DoubledGELU)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, off = plain(x), doubled(x)
    on = doubled(x.requires_grad_())
    for r, a, b in zip(ref, off, on):
        assert not torch.allclose(r, a)
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize('size', [(64, 64), (72, 104)])
def test_switch_to_deploy_keeps_the_outputs(size):
    model = _randomised(SMLPNet(arch=SMALL, img_size=64)).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        want = model(x)
        model.switch_to_deploy()
        model.switch_to_deploy()  # a second call changes nothing
        got = model(x)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    keys = model.state_dict().keys()
    assert not any('.global_norm.' in k for k in keys)
    assert 'stages.0.blocks.0.local_mix.bias' in keys
    assert all(b.deploy for s in model.stages for b in s.blocks)


def test_switch_to_deploy_leaves_blocks_without_a_foldable_norm():
    """Only an eval-mode BatchNorm after the depthwise conv is folded; the
    global-only ablation (no depthwise conv) keeps its norm."""
    model = SMLPNet(arch=SMALL, img_size=64, local_mix=False).eval()
    before = set(model.state_dict())
    model.switch_to_deploy()
    assert set(model.state_dict()) == before
