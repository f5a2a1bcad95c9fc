"""torch.fx: the backbones trace with ``torch.fx.symbolic_trace`` and the traced
graph computes what the module computes at any input size (the leaves
``check_input``, ``mix_grid``, ``spatial_shift`` and ``check_level_input`` read the
sizes when the graph runs); timm's FX feature extraction works on the sMLPNet
timm models."""
import pytest
import timm
import torch
import torch.fx
from timm.models import create_feature_extractor, get_graph_node_names

import mmsmlp.models.timm_models  # noqa: F401  (registers smlpnet_*)
from mmsmlp.models import S2MLP, ResMLP, SMLPNet
from mmsmlp.testing import randomise_weights

SMLP_ARCH = dict(embed_dims=16, depths=[1, 1, 2, 1], mlp_ratio=2)
ISO_ARCH = dict(embed_dims=16, num_blocks=3, mlp_ratio=2)
# (H, W): the reference size of the weights (64 x 64 for the sMLPNet cases), and
# others, not multiples of the strides and not square
SIZES = [(64, 64), (45, 77), (130, 96)]

BACKBONES = {
    'SMLPNet': lambda: SMLPNet(arch=SMLP_ARCH, img_size=64),
    'SMLPNet-ablation': lambda: SMLPNet(arch=SMLP_ARCH, img_size=64,
                                        fuse_mode='weighted_sum',
                                        branch_mode='sequential',
                                        smlp_stages=(1, 2)),
    'ResMLP': lambda: ResMLP(arch=ISO_ARCH),
    'ResMLP-pyramid': lambda: ResMLP(arch=ISO_ARCH, with_pyramid=True),
    'S2MLP': lambda: S2MLP(arch=ISO_ARCH),
    'S2MLP-pyramid': lambda: S2MLP(arch=ISO_ARCH, with_pyramid=True),
}
# the functions that must stay calls in the graph (they read sizes at run time)
LEAVES = {
    'SMLPNet': {'check_input', 'mix_grid'},
    'SMLPNet-ablation': {'check_input', 'mix_grid'},
    'ResMLP': {'check_input', 'mix_grid'},
    'ResMLP-pyramid': {'check_input', 'mix_grid', 'check_level_input'},
    'S2MLP': {'check_input', 'spatial_shift'},
    'S2MLP-pyramid': {'check_input', 'spatial_shift', 'check_level_input'},
}


def _called_functions(gm: torch.fx.GraphModule) -> set:
    return {getattr(n.target, '__name__', '') for n in gm.graph.nodes
            if n.op == 'call_function'}


def _assert_same(outs, expected):
    assert isinstance(outs, tuple) and len(outs) == len(expected)
    for out, ref in zip(outs, expected):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', list(BACKBONES))
def test_symbolic_trace_matches_eager_at_any_size(name):
    model = randomise_weights(BACKBONES[name]()).eval()
    gm = torch.fx.symbolic_trace(model)
    assert LEAVES[name] <= _called_functions(gm)
    torch.manual_seed(0)
    for batch, (h, w) in zip((2, 1, 3), SIZES):
        x = torch.randn(batch, 3, h, w)
        with torch.no_grad():
            expected = model(x)
            outs = gm(x)
        _assert_same(outs, expected)
        assert outs[0].shape[0] == batch


def test_traced_smlpnet_training_step_matches_eager():
    """Train mode (BatchNorm on batch statistics): same outputs and gradients."""
    model = randomise_weights(SMLPNet(arch=SMLP_ARCH, img_size=64)).train()
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 45, 77)
    grads = []
    for m in (model, gm):
        m.zero_grad()
        outs = m(x)
        sum(o.square().mean() for o in outs).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    with torch.no_grad():
        _assert_same(gm(x), model(x))
    assert grads[0].keys() == grads[1].keys()
    for n, grad in grads[0].items():
        torch.testing.assert_close(grads[1][n], grad, rtol=1e-4, atol=1e-6, msg=n)


def test_traced_graph_still_checks_its_input():
    gm = torch.fx.symbolic_trace(SMLPNet(arch=SMLP_ARCH, img_size=64).eval())
    with pytest.raises(ValueError, match='has 4 channels .* in_channels=3'):
        gm(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match='16x64 is too small'):
        gm(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match='NaN or Inf'):
        gm(torch.full((1, 3, 64, 64), float('nan')))


def _timm_model(**kwargs):
    return timm.create_model('smlpnet_tiny', arch=SMLP_ARCH, img_size=64, **kwargs)


def test_timm_create_feature_extractor_gives_the_stage_features():
    model = randomise_weights(_timm_model()).eval()
    train_nodes, eval_nodes = get_graph_node_names(model)
    stages = [f'backbone.stages.{i}' for i in range(4)]
    for nodes in (train_nodes, eval_nodes):
        for stage in stages:
            assert any(n.startswith(stage + '.') for n in nodes), stage
    extractor = create_feature_extractor(
        model, return_nodes={stage: f'stage{i}' for i, stage in enumerate(stages)})
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            feats = extractor(x)
            expected = model.forward_intermediates(x, intermediates_only=True)
        assert list(feats) == ['stage0', 'stage1', 'stage2', 'stage3']
        for i, (feat, ref) in enumerate(zip(feats.values(), expected)):
            stride = 4 * 2**i
            assert feat.shape == (2, 16 * 2**i, -(-h // stride), -(-w // stride))
            torch.testing.assert_close(feat, ref, rtol=1e-5, atol=1e-6)


def test_timm_features_only_fx_matches_the_feature_getter():
    torch.manual_seed(0)
    fx_net = _timm_model(features_only=True, feature_cls='fx').eval()
    torch.manual_seed(0)
    model = _timm_model().eval()  # the same initial weights
    assert type(fx_net).__name__ == 'FeatureGraphNet'
    assert fx_net.feature_info.reduction() == [4, 8, 16, 32]
    x = torch.randn(1, 3, 45, 77)
    with torch.no_grad():
        feats = fx_net(x)
        expected = model.forward_intermediates(x, intermediates_only=True)
    assert len(feats) == 4
    for feat, ref in zip(feats, expected):
        torch.testing.assert_close(feat, ref, rtol=1e-5, atol=1e-6)


def test_timm_model_symbolic_trace_matches_eager():
    model = randomise_weights(_timm_model(num_classes=7)).eval()
    gm = torch.fx.symbolic_trace(model)
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-6)
