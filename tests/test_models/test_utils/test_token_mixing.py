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
    x = torch.full((2, *grid_new, 3), 2.5)
    y = mix(x, dim=1)
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


@pytest.mark.parametrize('grid_ref,grid_new,dim', [((14, ), (40, ), 1), ((14, ), (5, ), 2),
                                                   ((6, 8), (9, 5), 1), ((6, 8), (6, 8), 1)])
@pytest.mark.parametrize('mode', INTERPOLATE_MODES)
def test_forward_applies_the_resized_mixing(grid_ref, grid_new, dim, mode):
    """The forward pass (resample, mix, resample back) is the mixing with the
    resized weights W' = D W U, b' = D b, along the given axes of any layout."""
    mix = TokenMixing(grid_ref, interpolate_mode=mode).double()
    shape = [2, 3, 4][:dim] + list(grid_new) + [5]
    x = torch.randn(*shape, dtype=torch.float64)
    w, b = mix.resized(grid_new)
    tokens = x.flatten(dim, dim + len(grid_new) - 1)
    want = mix_tokens(tokens, w, b, dim).view(x.shape)
    torch.testing.assert_close(mix(x, dim=dim), want)


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
    mix(x, dim=1).square().sum().backward()
    assert mix.weight.grad is not None and mix.weight.grad.abs().sum() > 0
    assert mix.bias.grad is not None and mix.bias.grad.abs().sum() > 0


def test_weights_changed_in_place_take_effect_at_once():
    """EMA (mmengine's ExponentialMovingAverage) and mmdet's MeanTeacherHook update
    weights through ``.data``, which moves no version counter: nothing derived
    from the weights is kept between calls, so the next forward uses them."""
    mix = TokenMixing(8).eval()
    x = torch.randn(2, 20, 4)
    with torch.no_grad():
        before = mix(x, dim=1)
        mix.weight.data.mul_(-3.0)
        mix.bias.data.add_(1.0)
        after = mix(x, dim=1)
    w, b = resize_token_mixing(mix.weight.detach(), mix.bias.detach(), (8, ), (20, ))
    torch.testing.assert_close(after, mix_tokens(x, w, b, 1))
    assert not torch.allclose(before, after)


def test_threads_get_the_right_mixing_for_their_own_sizes():
    """Forwards at many sizes from several threads at once (a served model):
    each gets its own grid's result and nothing raises."""
    import threading
    mix = TokenMixing(8).eval()
    inputs = {n: torch.randn(2, n, 3) for n in range(5, 29)}
    with torch.no_grad():
        want = {n: mix(x, dim=1) for n, x in inputs.items()}
    errors, wrong = [], []

    def work(offset):
        try:
            for n in list(inputs)[offset:] + list(inputs)[:offset]:
                with torch.no_grad():
                    if not torch.equal(mix(inputs[n], dim=1), want[n]):
                        wrong.append(n)
        except Exception as e:  # noqa: B902
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i * 3, )) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []


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
    with pytest.raises(ValueError, match=r"'reference_grid'.*15 tokens.*square"):
        mix2.load_state_dict({'weight': torch.zeros(15, 15), 'bias': torch.zeros(15)})
    with pytest.raises(ValueError, match=r"'reference_grid'.*\(3, 3\).*16 tokens"):
        mix2.load_state_dict({'weight': torch.zeros(16, 16), 'bias': torch.zeros(16),
                              'reference_grid': torch.tensor([3, 3])})


def test_a_2d_checkpoint_is_resized_from_its_own_grid():
    """14 x 14 and 28 x 7 both have 196 tokens: the saved grid, not the token
    count, says what the weights mix. A checkpoint without a grid (converted from
    elsewhere) is read as square."""
    square = TokenMixing((14, 14))
    tall = TokenMixing((28, 7))
    state = square.state_dict()
    tall.load_state_dict(state)
    want = resize_token_mixing(square.weight.detach(), square.bias.detach(),
                               (14, 14), (28, 7))
    torch.testing.assert_close(tall.weight.detach(), want[0])
    torch.testing.assert_close(tall.bias.detach(), want[1])
    assert tall.reference_grid.tolist() == [28, 7]
    # its own checkpoint reloads as it is
    again = TokenMixing((28, 7))
    again.load_state_dict(tall.state_dict())
    assert torch.equal(again.weight, tall.weight)
    # no saved grid: square
    legacy = {k: v for k, v in state.items() if k != 'reference_grid'}
    other = TokenMixing((28, 7))
    other.load_state_dict(legacy)
    torch.testing.assert_close(other.weight.detach(), want[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match='interpolate_mode'):
        TokenMixing(4, interpolate_mode='trilinear')
    for bad in (0, (3, 0), 4.5, '8', ()):
        with pytest.raises(ValueError, match='grid_size'):
            TokenMixing(bad)
    with pytest.raises(ValueError, match='axes'):
        TokenMixing((4, 4)).resized((5, ))
