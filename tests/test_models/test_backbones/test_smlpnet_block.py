"""The fast sMLP (bmm over views of one axis, the 3C concat never built) equals the
straightforward formulation of the official code (permute + 1x1 conv per axis,
concat, 1x1 fuse); it has no graph breaks under torch.compile, also with dynamic
shapes, and is safe under bf16 autocast."""
import pytest
import torch

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
    fast = SparseMLP(channels, (n, n)).eval()
    fast.mix_width.weight.data.copy_(official.proj_h.weight.view(n, n))
    fast.mix_width.bias.data.copy_(official.proj_h.bias)
    fast.mix_height.weight.data.copy_(official.proh_w.weight.view(n, n))
    fast.mix_height.bias.data.copy_(official.proh_w.bias)
    fast.fuse.weight.data.copy_(official.fuse.weight.view(channels, 3 * channels))
    return official, fast


@pytest.mark.parametrize('channels_last', [False, True])
def test_fast_smlp_equals_the_straightforward_one(channels_last):
    official, fast = paired()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        ref = official(x)
        # the official block applies BN + GELU first; the fast module starts after
        act = torch.nn.functional.gelu(official.BN(x))
        if channels_last:
            act = act.contiguous(memory_format=torch.channels_last)
        out = fast(act.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_is_close_and_finite():
    official, fast = paired(channels=16, n=14)
    x = torch.randn(2, 14, 14, 16)
    with torch.no_grad():
        ref = fast(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = fast(x)
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
