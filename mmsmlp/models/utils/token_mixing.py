"""Token mixing with learned ``Linear(N, N)`` weights over a spatial token grid.

This is the one home of the token-mixing weights of every backbone in mmsmlp:
sMLPNet's two axial mixings (a 1-D grid each) and ResMLP's patch mixing (a 2-D grid).
The weights belong to a *reference* grid (the training resolution) and mix the tokens
of any other grid through it.

Resizing rule
-------------
A mixing ``y = W x + b`` over a grid of ``N`` tokens acts on a grid of ``n`` tokens as
the mixing::

    W' = D @ W @ U        b' = D @ b

where ``D`` (n x N) interpolates values from the reference grid to the new grid and
``U`` (N x n) interpolates from the new grid back to the reference grid. Read from
right to left: the new input is resampled onto the reference grid, mixed by the stored
weights, and the result resampled onto the new grid. Both ``D`` and ``U`` have rows
that sum to one (interpolation weights), so

* a constant signal is mixed exactly as at the reference size: ``W' 1 = D (W 1)``;
  the mixing keeps its magnitude however far the grid grows or shrinks;
* at the reference size the stored tensors are used as they are;
* gradients flow to the stored weights.

On a grid of several axes (ResMLP's H x W patches) the rule is applied per axis,
i.e. ``D`` and ``U`` are Kronecker products of the per-axis matrices.

A forward pass applies the rule in that order, ``D (W (U x) + b)``, as three
products along the token axis: never more work than the reference mixing plus two
interpolations, however large the grid (a resized ``n x n`` matrix would cost
``n**2`` per token column, and ``(h*w)**2`` entries for ResMLP), nothing that can go
stale when the weights change, and no size baked into a traced or exported graph.
:meth:`TokenMixing.resized` gives ``W'`` and ``b'`` themselves (for analysis), and
checkpoints of another grid are resized with them on load.
"""
import math
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from mmsmlp.utils.compat import register_load_state_dict_pre_hook, statically_true
from .traced_size import is_fixed_size_tracing, traced_size

INTERPOLATE_MODES = ('nearest', 'nearest-exact', 'bilinear', 'bicubic', 'area')


def _check_mode(mode: str) -> str:
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f'interpolate_mode={mode!r} is not supported; '
                         f'choose one of {INTERPOLATE_MODES}')
    return mode


def interpolation_matrix(src, dst, mode: str = 'bilinear', device=None,
                         dtype=None) -> torch.Tensor:
    """The ``(dst, src)`` matrix ``M`` with ``M @ v == interpolate(v, dst)``.

    Built by interpolating the columns of an identity with ``F.interpolate`` so that
    every mode of ``F.interpolate`` (and its exact sampling positions) is available;
    ``src == dst`` gives the identity exactly. The sizes may be symbolic (traced).
    """
    ids = torch.arange(src, device=device)
    eye = (ids.view(-1, 1) == ids).to(dtype or torch.get_default_dtype())
    kwargs = dict(align_corners=False) if mode in ('bilinear', 'bicubic') else {}
    cols = F.interpolate(eye.view(src, 1, src, 1), size=(dst, 1), mode=mode, **kwargs)
    return cols.view(src, dst).t()


def resize_token_mixing(weight: torch.Tensor,
                        bias: Optional[torch.Tensor],
                        src_grid: Sequence[int],
                        dst_grid: Sequence[int],
                        mode: str = 'bilinear'):
    """Resize a token-mixing ``Linear`` from ``src_grid`` to ``dst_grid``.

    Args:
        weight (Tensor): ``(prod(src_grid), prod(src_grid))``, rows are outputs.
        bias (Tensor, optional): ``(prod(src_grid),)``.
        src_grid, dst_grid (Sequence[int]): token grids, e.g. ``(56,)`` or ``(14, 14)``.
        mode (str): an ``F.interpolate`` mode. See the module docstring for the rule.

    Returns:
        tuple: weight ``(prod(dst_grid), prod(dst_grid))`` and bias ``(prod(dst_grid),)``;
        the given tensors themselves when the grids are equal.
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    if src_grid == dst_grid:
        return weight, bias
    k = len(src_grid)
    kw = dict(device=weight.device, dtype=weight.dtype)
    w = weight.reshape(*src_grid, *src_grid)
    b = bias.reshape(src_grid) if bias is not None else None
    for axis, (s, d) in enumerate(zip(src_grid, dst_grid)):
        if s == d:
            continue
        down = interpolation_matrix(s, d, mode, **kw)  # (d, s): values to the new grid
        up = interpolation_matrix(d, s, mode, **kw)  # (s, d): new grid to the reference
        # output axis: W <- D W ; input axis: W <- W U
        w = torch.movedim(torch.tensordot(down, w, dims=([1], [axis])), 0, axis)
        w = torch.movedim(torch.tensordot(w, up, dims=([k + axis], [0])),
                          w.dim() - 1, k + axis)
        if b is not None:
            b = torch.movedim(torch.tensordot(down, b, dims=([1], [axis])), 0, axis)
    n = math.prod(dst_grid)
    return w.reshape(n, n), (b.reshape(n) if b is not None else None)


def mix_tokens(x: torch.Tensor, weight: torch.Tensor,
               bias: Optional[torch.Tensor], dim: int) -> torch.Tensor:
    """Apply ``y = W x + b`` along dimension ``dim`` of ``x`` (any layout).

    ``W`` is ``(m, n)`` for ``n`` tokens along ``dim`` (``m`` may differ: an
    interpolation). ``x`` is viewed as ``(P, n, Q)`` around ``dim`` and multiplied
    with ``bmm`` over an expanded (stride-0) weight: no permute copies for a
    contiguous ``x``, and mmengine's FlopAnalyzer counts ``bmm`` exactly (its
    ``matmul`` handler under-counts a broadcast ``(m, n) @ (..., n, Q)`` product).
    An ONNX export writes a broadcast ``MatMul`` instead (same values), whose
    graph holds no size.
    """
    dim = dim % x.dim()
    if torch.onnx.is_in_onnx_export():
        # ONNX MatMul broadcasts over the other axes: no size arithmetic in the
        # graph (the TorchScript-based exporter folds the sizes of bmm's operands
        # to the traced ones)
        last = x.dim() - 2
        if dim == last:  # already (..., n, Q): no Transpose in the graph
            out = torch.matmul(weight.to(x.dtype), x)
        else:
            out = torch.matmul(weight.to(x.dtype), x.movedim(dim, last))
        if bias is not None:
            out = out + bias.to(out.dtype)[:, None]
        return out if dim == last else out.movedim(last, dim)
    lead = x.shape[:dim]
    xv = x.reshape(-1, x.shape[dim], math.prod(x.shape[dim + 1:]))
    out = torch.bmm(weight.to(xv.dtype).expand(xv.shape[0], -1, -1), xv)
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1)
    return out.view(*lead, weight.shape[0], *x.shape[dim + 1:])


def _is_reference(grid, reference: Tuple[int, ...]) -> bool:
    """Whether ``grid`` is the reference grid, where the stored weights apply as
    they are. An ONNX export always takes the general path (exact at the reference
    size too), so that its graph holds no size, unless it is traced for one size
    (:func:`~mmsmlp.models.utils.traced_size.fixed_size_tracing`); dynamo
    (torch.compile with dynamic shapes, torch.export) sees symbolic sizes here and
    does the same without a guard (a graph compiled at the reference size serves
    every size; static shapes keep the shortcut). A plain ``torch.jit.trace``
    (mmengine's FlopAnalyzer) records one size anyway."""
    if torch.onnx.is_in_onnx_export() and not is_fixed_size_tracing():
        return False
    if torch.jit.is_tracing():  # the sizes are traced 0-dim tensors
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            return tuple(int(g) for g in grid) == reference
    return all(statically_true(g == r) for g, r in zip(grid, reference))


@torch.fx.wrap
def mix_grid(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
             dim: int, reference: Tuple[int, ...], mode: str) -> torch.Tensor:
    """Mix the tokens on the grid spanned by ``len(reference)`` consecutive axes of
    ``x`` from ``dim`` on: ``D (W (U x) + b)`` along those axes (the module
    docstring's rule), ``W x + b`` at the reference grid.

    A leaf for ``torch.fx`` (it reads the grid off ``x.shape``).
    """
    last = dim + len(reference) - 1
    grid = tuple(traced_size(x, d) for d in range(dim, last + 1))
    if _is_reference(grid, reference):
        if len(reference) == 1:
            return mix_tokens(x, weight, bias, dim)
        return mix_tokens(x.flatten(dim, last), weight, bias, dim).view(x.shape)
    kw = dict(device=x.device, dtype=weight.dtype)
    # resample onto the reference grid, one axis at a time (U is separable)
    for d, (size, ref) in enumerate(zip(grid, reference), dim):
        x = mix_tokens(x, interpolation_matrix(size, ref, mode, **kw), None, d)
    x = mix_tokens(x.flatten(dim, last), weight, bias, dim).unflatten(dim, reference)
    for d, (size, ref) in enumerate(zip(grid, reference), dim):
        x = mix_tokens(x, interpolation_matrix(ref, size, mode, **kw), None, d)
    return x


class TokenMixing(nn.Module):
    """A learned ``Linear(N, N)`` over the tokens of a grid, at any grid size.

    Args:
        grid_size (int | Sequence[int]): reference token grid, e.g. ``56`` for an
            axial mixing or ``(14, 14)`` for ResMLP's patch mixing; ``N`` is its
            product.
        bias (bool): learn a bias per output token. Defaults to True.
        interpolate_mode (str): ``F.interpolate`` mode of the resampling between
            grids (see the module docstring). Defaults to ``'bilinear'``.

    Shapes:
        ``forward(x, dim)``: the axes ``dim .. dim + len(grid_size) - 1`` of ``x``
        are the token grid (any sizes); the output has ``x``'s shape.

    A grid of several axes is saved with the state dict (buffer
    ``reference_grid``), so that a checkpoint is resized from the grid it was
    trained on, not guessed from its token count (14 x 14 and 28 x 7 both have 196
    tokens); a checkpoint without it (converted from elsewhere) is read as a square
    grid.
    """

    def __init__(self,
                 grid_size: Union[int, Sequence[int]],
                 bias: bool = True,
                 interpolate_mode: str = 'bilinear'):
        super().__init__()
        grid = tuple(grid_size) if isinstance(grid_size, Sequence) else (grid_size, )
        if not grid or not all(type(g) is int and g >= 1 for g in grid):
            raise ValueError(f'TokenMixing: grid_size={grid_size!r} must be a '
                             'positive int or a sequence of positive ints')
        self.grid_size = grid
        self.interpolate_mode = _check_mode(interpolate_mode)
        n = math.prod(self.grid_size)
        self.weight = nn.Parameter(torch.empty(n, n))
        self.bias = nn.Parameter(torch.empty(n)) if bias else None
        if len(grid) > 1:
            self.register_buffer('reference_grid', torch.tensor(grid))
        self.reset_parameters()
        register_load_state_dict_pre_hook(self, self._resize_on_load)

    def reset_parameters(self):
        # same default as nn.Linear / the official Conv2d(N, N, 1)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight.shape[1])
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f'grid_size={self.grid_size}, bias={self.bias is not None}, '
                f'interpolate_mode={self.interpolate_mode!r}')

    def forward(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Mix the tokens of the grid at axes ``dim, dim + 1, ...`` of ``x``."""
        return mix_grid(x, self.weight, self.bias, dim, self.grid_size,
                        self.interpolate_mode)

    def resized(self, grid: Sequence[int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``W'`` and ``b'`` for token grid ``grid`` (the stored tensors at the
        reference); gradients reach the stored ones."""
        grid = tuple(grid)
        if len(grid) != len(self.grid_size):
            raise ValueError(f'grid {grid} has {len(grid)} axes; this mixing was '
                             f'built for {len(self.grid_size)}: {self.grid_size}')
        return resize_token_mixing(self.weight, self.bias, self.grid_size, grid,
                                   self.interpolate_mode)

    # ------------------------------------------------------- checkpoint loading
    def _source_grid(self, key: str, numel: int, saved) -> Tuple[int, ...]:
        """The token grid of a checkpoint weight with ``numel`` rows: the saved
        grid, else (1-D) its size, else (no grid saved: a checkpoint converted
        from elsewhere) the square grid of that size."""
        if len(self.grid_size) == 1:
            return (numel, )
        if saved is not None:
            grid = tuple(int(g) for g in torch.as_tensor(saved).flatten())
            if len(grid) != len(self.grid_size) or math.prod(grid) != numel:
                raise ValueError(f'checkpoint key {key!r} says the token grid is '
                                 f'{grid}, which does not fit its {numel} tokens or '
                                 f'the {len(self.grid_size)} axes of {self.grid_size}')
            return grid
        side = round(numel**(1 / len(self.grid_size)))
        if side**len(self.grid_size) != numel:
            raise ValueError(
                f'checkpoint key {key!r} mixes {numel} tokens and does not say on '
                f'which grid; without a saved grid only square grids are accepted '
                f'({numel} is not a power of {len(self.grid_size)}). Model grid: '
                f'{self.grid_size}')
        return (side, ) * len(self.grid_size)

    def _resize_on_load(self, state_dict, prefix, *args):
        wkey, bkey, gkey = prefix + 'weight', prefix + 'bias', prefix + 'reference_grid'
        if wkey not in state_dict:
            return
        w = state_dict[wkey]
        if w.dim() != 2 or w.shape[0] != w.shape[1]:
            raise ValueError(
                f'checkpoint key {wkey!r} has shape {tuple(w.shape)}, which cannot be '
                f'resized to the model shape {tuple(self.weight.shape)} (grid '
                f'{self.grid_size}); a token-mixing weight must be a square matrix')
        src = self._source_grid(gkey, w.shape[0], state_dict.get(gkey))
        if len(self.grid_size) > 1:  # the weights are loaded for this grid
            state_dict[gkey] = torch.tensor(self.grid_size)
        b = state_dict.get(bkey)
        if b is not None and tuple(b.shape) != (w.shape[0], ):
            raise ValueError(f'checkpoint key {bkey!r} has shape {tuple(b.shape)}; '
                             f'expected ({w.shape[0]},) to match {wkey!r}')
        if src == self.grid_size:
            return
        with torch.no_grad():
            nw, nb = resize_token_mixing(w.float(), None if b is None else b.float(),
                                         src, self.grid_size, self.interpolate_mode)
        state_dict[wkey] = nw.to(w.dtype)
        if b is not None:
            state_dict[bkey] = nb.to(b.dtype)
        from mmengine.logging import print_log
        print_log(f'Resized {wkey} from grid {src} to {self.grid_size}',
                  logger='current')
