"""Token mixing with learned ``Linear(N, N)`` weights over a spatial token grid.

This is the one home of the token-mixing weights of every backbone in mmsmlp:
sMLPNet's two axial mixings (a 1-D grid each) and ResMLP's patch mixing (a 2-D grid).
The weights belong to a *reference* grid (the training resolution) and are resized to
the token grid of the current input.

Resizing rule
-------------
A mixing ``y = W x + b`` over a grid of ``N`` tokens is resized to ``n`` tokens as::

    W' = D @ W @ U        b' = D @ b

where ``D`` (n x N) interpolates values from the reference grid to the new grid and
``U`` (N x n) interpolates from the new grid back to the reference grid. Read from
right to left: the new input is resampled onto the reference grid, mixed by the stored
weights, and the result resampled onto the new grid. Both ``D`` and ``U`` have rows
that sum to one (interpolation weights), so

* a constant signal is mixed exactly as at the reference size: ``W' 1 = D (W 1)``;
  the mixing keeps its magnitude however far the grid grows or shrinks;
* at the reference size ``D`` and ``U`` are identities and the stored tensors are
  returned as they are (bit for bit);
* gradients flow to the stored weights through two small matmuls.

On a grid of several axes (ResMLP's H x W patches) the rule is applied per axis,
i.e. ``D`` and ``U`` are Kronecker products of the per-axis matrices.
"""
import math
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

INTERPOLATE_MODES = ('nearest', 'nearest-exact', 'bilinear', 'bicubic', 'area')


def _check_mode(mode: str) -> str:
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f'interpolate_mode={mode!r} is not supported; '
                         f'choose one of {INTERPOLATE_MODES}')
    return mode


def interpolation_matrix(src: int,
                         dst: int,
                         mode: str = 'bilinear',
                         device=None,
                         dtype=None) -> torch.Tensor:
    """The ``(dst, src)`` matrix ``M`` with ``M @ v == interpolate(v, dst)``.

    Built by interpolating the columns of an identity with ``F.interpolate`` so that
    every mode of ``F.interpolate`` (and its exact sampling positions) is available.
    """
    if src == dst:
        return torch.eye(src, device=device, dtype=dtype)
    eye = torch.eye(src, device=device, dtype=dtype).view(src, 1, src, 1)
    kwargs = dict(align_corners=False) if mode in ('bilinear', 'bicubic') else {}
    cols = F.interpolate(eye, size=(dst, 1), mode=mode, **kwargs)  # (src, 1, dst, 1)
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
        tuple: weight ``(prod(dst_grid), prod(dst_grid))`` and bias ``(prod(dst_grid),)``.
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
        w = torch.movedim(torch.tensordot(w, up, dims=([k + axis], [0])), -1, k + axis)
        if b is not None:
            b = torch.movedim(torch.tensordot(down, b, dims=([1], [axis])), 0, axis)
    n = math.prod(dst_grid)
    return w.reshape(n, n), (b.reshape(n) if b is not None else None)


def mix_tokens(x: torch.Tensor, weight: torch.Tensor,
               bias: Optional[torch.Tensor], dim: int,
               out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Apply ``y = W x + b`` along dimension ``dim`` of ``x`` (any layout).

    ``x`` is viewed as ``(P, n, Q)`` around ``dim`` and multiplied with ``bmm`` over
    an expanded (stride-0) weight: no permute copies for contiguous ``x``, and
    mmengine's FlopAnalyzer counts ``bmm`` exactly (its ``matmul`` handler
    under-counts a broadcast ``(n, n) @ (..., n, Q)`` product). ``out`` (a
    contiguous tensor of ``x``'s shape, optional) receives ``W x`` when there is
    no bias.
    """
    dim = dim % x.dim()
    n = x.shape[dim]
    lead = math.prod(x.shape[:dim])
    xv = x.reshape(lead, n, -1)
    if out is not None:
        if bias is not None:
            raise ValueError('mix_tokens: out= is only supported without a bias')
        out = out.view(lead, n, -1)
    out = torch.bmm(weight.to(xv.dtype).expand(lead, n, n), xv, out=out)
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, n, 1)
    return out.view(x.shape)


class TokenMixing(nn.Module):
    """A learned ``Linear(N, N)`` over the tokens of a grid, at any grid size.

    Args:
        grid_size (int | Sequence[int]): reference token grid, e.g. ``56`` for an
            axial mixing or ``(14, 14)`` for ResMLP's patch mixing; ``N`` is its product.
        bias (bool): learn a bias per output token. Defaults to True.
        interpolate_mode (str): ``F.interpolate`` mode used to resize the weights to
            another grid (see the module docstring). Defaults to ``'bilinear'``.
        cache_size (int): resized weights kept per module for inference (no grad);
            least recently used sizes are dropped. 0 disables the cache. Defaults to 8.

    Shapes:
        ``forward(x, dim)``: ``x`` has ``prod(grid)`` tokens along ``dim``; the grid is
        given by ``grid`` (defaults to the reference grid). The output has ``x``'s shape.
    """

    def __init__(self,
                 grid_size,
                 bias: bool = True,
                 interpolate_mode: str = 'bilinear',
                 cache_size: int = 8):
        super().__init__()
        self.grid_size = tuple(grid_size) if isinstance(grid_size, Sequence) \
            else (int(grid_size), )
        if any(int(g) < 1 for g in self.grid_size):
            raise ValueError(f'grid_size={grid_size} must be positive')
        self.interpolate_mode = _check_mode(interpolate_mode)
        if int(cache_size) < 0:
            raise ValueError(f'cache_size={cache_size} must be >= 0')
        self.cache_size = int(cache_size)
        n = math.prod(self.grid_size)
        self.weight = nn.Parameter(torch.empty(n, n))
        self.bias = nn.Parameter(torch.empty(n)) if bias else None
        self._cache: 'OrderedDict[tuple, tuple]' = OrderedDict()
        self._cache_stamp = None
        self.reset_parameters()
        self._register_load_state_dict_pre_hook(self._resize_on_load)

    def reset_parameters(self):
        # same default as nn.Linear / the official Conv2d(N, N, 1)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight.shape[1])
            nn.init.uniform_(self.bias, -bound, bound)
        self.clear_cache()

    def extra_repr(self) -> str:
        return (f'grid_size={self.grid_size}, bias={self.bias is not None}, '
                f'interpolate_mode={self.interpolate_mode!r}')

    # ------------------------------------------------------------------ resizing
    def clear_cache(self):
        self._cache.clear()
        self._cache_stamp = None

    def _stamp(self):
        # changes whenever the parameters are updated in place (optimizer step,
        # load_state_dict) or replaced (.to(), .half()).
        ts = [self.weight] + ([self.bias] if self.bias is not None else [])
        return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in ts)

    def resized(self, grid: Optional[Sequence[int]] = None) -> Tuple:
        """Weight and bias for token grid ``grid`` (the stored ones at the reference)."""
        grid = self.grid_size if grid is None else tuple(int(g) for g in grid)
        if grid == self.grid_size:
            return self.weight, self.bias
        if len(grid) != len(self.grid_size):
            raise ValueError(f'grid {grid} has {len(grid)} axes; this mixing was '
                             f'built for {len(self.grid_size)}: {self.grid_size}')
        use_cache = (self.cache_size > 0 and not torch.is_grad_enabled()
                     and not torch.compiler.is_compiling())
        if use_cache:
            stamp = self._stamp()
            if stamp != self._cache_stamp:
                self._cache.clear()
                self._cache_stamp = stamp
            hit = self._cache.get(grid)
            if hit is not None:
                self._cache.move_to_end(grid)
                return hit
        # resize in the parameters' precision even under autocast
        with torch.autocast(self.weight.device.type, enabled=False):
            out = resize_token_mixing(self.weight, self.bias, self.grid_size, grid,
                                      self.interpolate_mode)
        if use_cache:
            self._cache[grid] = out
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    def forward(self, x: torch.Tensor, dim: int,
                grid: Optional[Sequence[int]] = None) -> torch.Tensor:
        weight, bias = self.resized(grid)
        if x.shape[dim] != weight.shape[0]:
            raise ValueError(f'{x.shape[dim]} tokens along dim {dim} of input '
                             f'{tuple(x.shape)} do not match the grid {grid}')
        return mix_tokens(x, weight, bias, dim)

    # ------------------------------------------------------- checkpoint loading
    def _source_grid(self, numel: int):
        """Token grid of a checkpoint weight with ``numel`` rows (same aspect)."""
        if len(self.grid_size) == 1:
            return (numel, )
        # several axes: keep the reference aspect ratio, e.g. 14x14 -> 24x24
        ref = math.prod(self.grid_size)
        scale = (numel / ref)**(1 / len(self.grid_size))
        grid = tuple(int(round(g * scale)) for g in self.grid_size)
        return grid if math.prod(grid) == numel else None

    def _resize_on_load(self, state_dict, prefix, *args, **kwargs):
        wkey, bkey = prefix + 'weight', prefix + 'bias'
        if wkey not in state_dict:
            return
        self.clear_cache()
        w = state_dict[wkey]
        if w.shape == self.weight.shape:
            return
        src = self._source_grid(w.shape[0]) if w.dim() == 2 else None
        if (w.dim() != 2 or w.shape[0] != w.shape[1] or src is None):
            raise ValueError(
                f'checkpoint key {wkey!r} has shape {tuple(w.shape)}, which cannot be '
                f'resized to the model shape {tuple(self.weight.shape)} (grid '
                f'{self.grid_size}); a token-mixing weight must be a square matrix '
                'over the tokens of a grid with the same aspect ratio')
        b = state_dict.get(bkey)
        if b is not None and tuple(b.shape) != (w.shape[0], ):
            raise ValueError(f'checkpoint key {bkey!r} has shape {tuple(b.shape)}; '
                             f'expected ({w.shape[0]},) to match {wkey!r}')
        with torch.no_grad():
            nw, nb = resize_token_mixing(w.float(), None if b is None else b.float(),
                                         src, self.grid_size, self.interpolate_mode)
        state_dict[wkey] = nw.to(w.dtype)
        if b is not None:
            state_dict[bkey] = nb.to(b.dtype)
        from mmengine.logging import print_log
        print_log(f'Resized {wkey} from grid {src} to {self.grid_size}',
                  logger='current')
