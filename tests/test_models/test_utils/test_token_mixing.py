import pytest
import torch

from mmsmlp.models.utils.token_mixing import (INTERPOLATE_MODES, TokenMixing,
                                              interpolation_matrix, mix_tokens,
                                              resize_token_mixing)


@pytest.mark.parametrize('mode', INTERPOLATE_MODES)
@pytest.mark.parametrize('src,dst', [(7, 7), (7, 12), (56, 17), (5, 1), (1, 4)])
def test_interpolation_matrix_matches_interpolate(mode, src, dst):
    m = interpolation_matrix(src, dst, mode)
    assert m.shape == (dst, src)
    torch.testing.assert_close(m.sum(1), torch.ones(dst))  # interpolation weights
    v = torch.randn(src)
    kw = dict(align_corners=False) if mode in ('bilinear', 'bicubic') else {}
    ref = torch.nn.functional.interpolate(
        v.view(1, 1, src, 1), size=(dst, 1), mode=mode, **kw).view(dst)
    torch.testing.assert_close(m @ v, ref)


def test_resize_is_identity_at_reference():
    mix = TokenMixing(9)
    w, b = mix.resized((9, ))
    assert w is mix.weight and b is mix.bias
    w2, b2 = resize_token_mixing(mix.weight, mix.bias, (3, 3), (3, 3))
    assert w2 is mix.weight and b2 is mix.bias


@pytest.mark.parametrize('grid_ref,grid_new', [((14, ), (40, )), ((14, ), (5, )),
                                               ((6, 8), (9, 5)), ((6, 8), (3, 16))])
@pytest.mark.parametrize('mode', ['bilinear', 'bicubic', 'nearest'])
def test_constant_signal_keeps_its_magnitude(grid_ref, grid_new, mode):
    """The documented rule: W' 1 = D (W 1), b' = D b; an averaging mixing stays
    averaging, so a constant stays exactly that constant at any grid size."""
    mix = TokenMixing(grid_ref, interpolate_mode=mode)
    n = mix.weight.shape[0]
    with torch.no_grad():
        mix.weight.copy_(torch.rand(n, n))
        mix.weight.div_(mix.weight.sum(1, keepdim=True))  # rows sum to one
        mix.bias.zero_()
    m_new = torch.tensor(grid_new).prod().item()
    x = torch.full((2, m_new, 3), 2.5)
    y = mix(x, dim=1, grid=grid_new)
    torch.testing.assert_close(y, x)

    # and with arbitrary weights: the row sums / bias are interpolated values
    with torch.no_grad():
        mix.weight.normal_()
        mix.bias.normal_()
    w, b = mix.resized(grid_new)
    # row sums of the resized weight are the interpolated row sums
    if len(grid_ref) == 1:
        d = interpolation_matrix(grid_ref[0], grid_new[0], mode)
        torch.testing.assert_close(w.sum(1), d @ mix.weight.sum(1), atol=1e-4,
                                   rtol=1e-4)
        torch.testing.assert_close(b, d @ mix.bias)


def test_resize_2d_is_kronecker_of_axes():
    """Resizing a (H*W)x(H*W) kernel equals resizing with Kronecker products of
    the per-axis matrices (the kernel is treated over (H, W) x (H, W))."""
    src, dst = (4, 6), (7, 3)
    w = torch.randn(24, 24, dtype=torch.float64)
    b = torch.randn(24, dtype=torch.float64)
    w2, b2 = resize_token_mixing(w, b, src, dst)
    kw = dict(dtype=torch.float64)
    down = torch.kron(interpolation_matrix(4, 7, **kw), interpolation_matrix(6, 3, **kw))
    up = torch.kron(interpolation_matrix(7, 4, **kw), interpolation_matrix(3, 6, **kw))
    torch.testing.assert_close(w2, down @ w @ up)
    torch.testing.assert_close(b2, down @ b)


@pytest.mark.parametrize('dim', [1, 2, 3])
def test_mix_tokens_matches_einsum(dim):
    x = torch.randn(2, 5, 6, 7)
    n = x.shape[dim]
    w, b = torch.randn(n, n), torch.randn(n)
    y = mix_tokens(x, w, b, dim)
    xm = x.movedim(dim, -1)
    ref = (xm @ w.t() + b).movedim(-1, dim)
    torch.testing.assert_close(y, ref)


def test_gradients_reach_stored_weights():
    mix = TokenMixing(8)
    x = torch.randn(2, 13, 4)
    mix(x, dim=1, grid=(13, )).square().sum().backward()
    assert mix.weight.grad is not None and mix.weight.grad.abs().sum() > 0
    assert mix.bias.grad is not None and mix.bias.grad.abs().sum() > 0


def test_inference_cache_is_bounded_and_invalidated():
    mix = TokenMixing(8, cache_size=3)
    with torch.no_grad():
        for n in range(9, 40):
            mix.resized((n, ))
    assert len(mix._cache) == 3
    with torch.no_grad():
        w1, _ = mix.resized((20, ))
        assert mix.resized((20, ))[0] is w1  # hit
        mix.weight.add_(1.0)  # an optimizer step / load changes the weights
        w2, _ = mix.resized((20, ))
    assert w2 is not w1
    torch.testing.assert_close(
        w2, resize_token_mixing(mix.weight, mix.bias, (8, ), (20, ))[0])
    # no caching while gradients are recorded (training)
    w3, _ = mix.resized((20, ))
    assert w3.requires_grad and w3 is not w2


def test_load_resizes_checkpoint_weights():
    small, big = TokenMixing(7), TokenMixing(12)
    big.load_state_dict(small.state_dict())
    w, b = resize_token_mixing(small.weight.detach(), small.bias.detach(), (7, ), (12, ))
    torch.testing.assert_close(big.weight.detach(), w)
    torch.testing.assert_close(big.bias.detach(), b)
    # 2-D grids keep the aspect ratio: 4x6 -> 6x9
    m46, m69 = TokenMixing((4, 6)), TokenMixing((6, 9))
    m69.load_state_dict(m46.state_dict())
    torch.testing.assert_close(
        m69.weight.detach(),
        resize_token_mixing(m46.weight.detach(), None, (4, 6), (6, 9))[0])


def test_load_refuses_unreconcilable_shapes():
    mix = TokenMixing(7)
    with pytest.raises(ValueError, match=r"'weight'.*\(5, 6\).*\(7, 7\)"):
        mix.load_state_dict({'weight': torch.zeros(5, 6), 'bias': torch.zeros(5)})
    mix2 = TokenMixing((4, 4))
    with pytest.raises(ValueError, match=r'\(15, 15\).*\(16, 16\)'):
        mix2.load_state_dict({'weight': torch.zeros(15, 15), 'bias': torch.zeros(15)})


def test_bad_arguments():
    with pytest.raises(ValueError, match='interpolate_mode'):
        TokenMixing(4, interpolate_mode='trilinear')
    with pytest.raises(ValueError, match='cache_size'):
        TokenMixing(4, cache_size=-1)
    with pytest.raises(ValueError, match='do not match'):
        TokenMixing(4)(torch.randn(1, 5, 2), dim=1)
