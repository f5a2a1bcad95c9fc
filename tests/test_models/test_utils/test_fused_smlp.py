"""mmsmlp.models.utils.fused_smlp: the one-node sMLP equals the plain formulation,
forward and backward; the blocks' fast paths equal their plain paths."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmsmlp.models import SMLPNet
from mmsmlp.models.backbones.smlpnet import SMLPBlock, SparseMLP
from mmsmlp.models.utils.fused_smlp import fused_sparse_mlp


def _inputs(b=2, h=5, w=7, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.double,
                           requires_grad=True)
    return (rand(b, h, w, c), rand(w, w), rand(w), rand(h, h), rand(h),
            rand(c, 3 * c)), rand(b, h, w, c)


@pytest.mark.parametrize('with_shortcut', [False, True])
def test_gradcheck(with_shortcut):
    args, shortcut = _inputs()
    if with_shortcut:
        assert torch.autograd.gradcheck(
            lambda *a: fused_sparse_mlp(*a[:-1], shortcut=a[-1]), (*args, shortcut))
    else:
        assert torch.autograd.gradcheck(fused_sparse_mlp, args)


def test_equals_the_written_out_formula():
    (x, ww, bw, wh, bh, fuse), shortcut = _inputs(seed=1)
    c = x.shape[-1]
    x_w = torch.einsum('vw,bhwc->bhvc', ww, x) + bw.view(1, 1, -1, 1)
    x_h = torch.einsum('gh,bhwc->bgwc', wh, x) + bh.view(1, -1, 1, 1)
    ref = torch.cat([x, x_w, x_h], dim=-1) @ fuse.t() + shortcut
    out = fused_sparse_mlp(x, ww, bw, wh, bh, fuse, shortcut=shortcut)
    assert out.shape == x.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref)
    assert fuse.shape == (c, 3 * c)


@pytest.mark.parametrize('size', [(6, 6), (5, 9)])  # reference grid, resized
def test_module_fused_and_plain_paths_agree(size):
    torch.manual_seed(0)
    smlp = SparseMLP(8, (6, 6)).double()
    x = torch.randn(2, *size, 8, dtype=torch.double, requires_grad=True)
    shortcut = torch.randn_like(x, requires_grad=True)
    grad = torch.randn_like(x)
    inputs = [x, shortcut, *smlp.parameters()]
    fused = smlp(x, shortcut=shortcut)
    plain = smlp._forward_plain(x) + shortcut
    torch.testing.assert_close(fused, plain)
    for a, b in zip(torch.autograd.grad(fused, inputs, grad),
                    torch.autograd.grad(plain, inputs, grad)):
        torch.testing.assert_close(a, b)


def _randomise_bn_statistics(model):
    """BatchNorm statistics that are not the identity (what folding must keep)."""
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if 'running_mean' in name:
                buf.normal_(0, 0.3)
            elif 'running_var' in name:
                buf.uniform_(0.5, 2.)


@pytest.mark.parametrize('mode, drop_path_rate', [
    ('train', 0.), ('train', 0.3),
    ('eval', 0.),  # BN after the depthwise conv folded into it
    ('norm_eval', 0.3),  # training with frozen BN statistics: folded, with grads
])
def test_backbone_fast_and_plain_paths_agree(monkeypatch, mode, drop_path_rate):
    """The same backbone once with its fast paths and once forced onto the plain
    ones (the paths taken under torch.compile): outputs, parameter gradients and
    BatchNorm statistics agree, drop path (same random masks) included."""
    def run(force_plain):
        if force_plain:
            monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
        torch.manual_seed(0)
        model = SMLPNet(arch=dict(embed_dims=8, depths=[1, 2, 1, 1]),
                        img_size=64, drop_path_rate=drop_path_rate,
                        norm_eval=mode == 'norm_eval')
        _randomise_bn_statistics(model)
        model.train(mode != 'eval')
        x = torch.randn(2, 3, 64, 96)
        torch.manual_seed(1)  # drop-path masks
        outs = model(x)
        sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum()
            for o in outs).backward()
        monkeypatch.undo()
        return outs, {n: p.grad for n, p in model.named_parameters()}, \
            {n: b for n, b in model.named_buffers() if 'running' in n}

    fast, plain = run(False), run(True)
    for a, b in zip(fast[0], plain[0]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert fast[1].keys() == plain[1].keys()
    for name in fast[1]:
        scale = max(plain[1][name].abs().max().item(), 1.)  # fp32 sums of many terms
        torch.testing.assert_close(fast[1][name], plain[1][name], rtol=1e-4,
                                   atol=1e-5 * scale, msg=name)
    for name in fast[2]:
        torch.testing.assert_close(fast[2][name], plain[2][name], msg=name)


@pytest.mark.parametrize('no_autograd', [torch.no_grad, torch.inference_mode])
def test_inference_paths_reuse_buffers_without_changing_results(monkeypatch,
                                                                no_autograd):
    """Without autograd the blocks activate in place, write the channel MLP onto
    the token-mixing result and reuse one axial buffer: same outputs as the plain
    paths, and neither the input nor a returned feature map is overwritten."""
    torch.manual_seed(0)
    model = SMLPNet(arch=dict(embed_dims=8, depths=[1, 2, 1, 1]), img_size=64,
                    out_indices=(0, 1, 2, 3)).eval()
    _randomise_bn_statistics(model)
    x = torch.randn(2, 3, 64, 96)
    x_before = x.clone()
    with no_autograd():
        fast = [o.clone() for o in model(x)]
        again = model(x)
    assert torch.equal(x, x_before)
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    with torch.no_grad():
        plain = model(x)
    monkeypatch.undo()
    for f, a, p in zip(fast, again, plain):
        torch.testing.assert_close(f, p, rtol=1e-4, atol=1e-5)
        assert torch.equal(f, a)

    smlp = SparseMLP(8, (6, 6)).double()
    y = torch.randn(2, 5, 9, 8, dtype=torch.double)
    shortcut = torch.randn_like(y)
    with no_autograd():
        fused = smlp(y, shortcut=shortcut)
    torch.testing.assert_close(fused, smlp._forward_plain(y) + shortcut)


def test_gelu_of_a_channels_last_map_runs_on_its_contiguous_view():
    """The blocks' GELU gets the contiguous (B, H, W, C) view of a channels-last
    map (torch's fast CPU kernel serves contiguous tensors only); values,
    gradients and the map's layout are those of GELU applied directly."""
    seen = []

    class SpyGELU(nn.GELU):
        def forward(self, x):
            seen.append((tuple(x.shape), x.is_contiguous()))
            return super().forward(x)

    y = torch.randn(2, 6, 5, 7).contiguous(memory_format=torch.channels_last)
    y.requires_grad_()
    out = SMLPBlock._activate(SpyGELU(), y)
    assert seen == [((2, 5, 7, 6), True)]
    assert out.shape == y.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, F.gelu(y))
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, y, grad)[0],
                               torch.autograd.grad(F.gelu(y), y, grad)[0])
    # without autograd: in place on the same view, same values
    with torch.no_grad():
        fresh = y.detach().clone(memory_format=torch.channels_last)
        out = SMLPBlock._activate(SpyGELU(), fresh)
    assert out.data_ptr() == fresh.data_ptr() and len(seen) == 1
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, F.gelu(y.detach()))


def test_autocast_keeps_the_residual_stream_in_fp32():
    torch.manual_seed(0)
    model = SMLPNet(arch=dict(embed_dims=8, depths=[1, 1, 1, 1]), img_size=64)
    block = model.stages[0].blocks[0].train()
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        token = block.token_mix(x)
        out = block(x)
    assert token.dtype == out.dtype == torch.float32
    ref = block(x)
    torch.testing.assert_close(out, ref, atol=0.1, rtol=0.05)
