"""A feature pyramid built from single-scale feature maps, for the isotropic
backbones of mmsmlp (ResMLP, S2-MLP) under FPN / UperNet.

This follows the *simple feature pyramid* idea of ViTDet (Li et al., "Exploring
Plain Vision Transformer Backbones for Object Detection", arXiv 2203.16527): the
stride-16 map of a plain backbone is resampled to strides 4, 8, 16 and 32 by
stride-2 transposed convolutions (x4: two of them, x2: one), an identity and a
max pooling. Each level is built by :class:`SimplePyramid` from a power-of-two
``scale``:

* ``scale = 2**k > 1``: ``k`` transposed convs (kernel 2, stride 2), with a norm and
  an activation between two of them (as ViTDet's x4 branch);
* ``scale = 1``: identity;
* ``scale = 2**-k < 1``: a ``2**k x 2**k`` max pooling with stride ``2**k``
  (``ceil_mode``: a map of odd size keeps its last row / column);

then a ``1 x 1`` convolution when the level must change the number of channels and
the level has no transposed conv to do it, and an output norm (``out_norm``).
"""
import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule, ModuleDict

from mmsmlp.utils.compat import is_compiling
from .patch_embed import pad_to_multiple
from .traced_size import traced_size

__all__ = ['SimplePyramid', 'LayerNorm2d', 'build_norm_2d']


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of every position of a ``(B, C, H, W)`` map.

    Built by :func:`build_norm_2d` for ``norm_cfg=dict(type='LN')`` (mmcv's ``LN``
    is an ``nn.LayerNorm`` over the *last* dimension, i.e. the width of a map).
    Parameters are ``weight`` and ``bias`` of shape ``(C,)``, as ``nn.LayerNorm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def build_norm_2d(norm_cfg: dict, channels: int) -> nn.Module:
    """``build_norm_layer(norm_cfg, channels)[1]`` for ``(B, C, H, W)`` inputs: a
    LayerNorm (``type='LN'``) becomes a :class:`LayerNorm2d` over the channels."""
    layer = build_norm_layer(norm_cfg, channels)[1]
    if type(layer) is nn.LayerNorm:
        ln2d = LayerNorm2d(channels, eps=layer.eps,
                           elementwise_affine=layer.elementwise_affine,
                           bias=layer.bias is not None)
        for p in ln2d.parameters():
            p.requires_grad = norm_cfg.get('requires_grad', True)
        return ln2d
    return layer


def _log2_scale(scale) -> int:
    """``k`` with ``scale == 2**k``, or an error."""
    try:
        k = math.log2(float(scale))
    except (TypeError, ValueError):
        k = None
    if k is None or not k.is_integer() or abs(k) > 5:
        raise ValueError(f'SimplePyramid: scale={scale!r} is not supported; each '
                         'scale must be a power of two between 1/32 and 32 '
                         '(e.g. 4, 2, 1, 0.5)')
    return int(k)


class CornerMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d(k, k, ceil_mode=True)``: a ``k x k`` max pooling with stride
    ``k`` whose last window along each side may be partial (``ceil(n / k)``
    outputs). Computed as a ``-inf`` padding of the bottom / right to multiples of
    ``k`` (:func:`~mmsmlp.models.utils.pad_to_multiple`) and a plain pooling: the
    same values, and a graph that exporters write for any input size (the
    TorchScript-based ONNX exporter of torch 2.1 refuses ``ceil_mode`` on inputs
    of unknown size)."""

    def __init__(self, kernel_size: int):
        super().__init__(kernel_size, kernel_size, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return F.max_pool2d(pad_to_multiple(x, k, value=float('-inf')), k, k)


class PyramidLevel(nn.Module):
    """One level of :class:`SimplePyramid`: ``resample -> proj -> norm``.

    Shapes:
        input ``(B, in_channels, h, w)``; output ``(B, out_channels, h * s, w * s)``
        for ``s = scale >= 1`` and ``(B, out_channels, ceil(h * s), ceil(w * s))``
        for ``s < 1``.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: float,
                 norm_cfg: dict, act_cfg: dict, out_norm: bool):
        super().__init__()
        k = _log2_scale(scale)
        self.scale = 2.0**k
        layers = []
        if k > 0:
            channels = in_channels
            for i in range(k):
                if i > 0:
                    layers += [build_norm_2d(norm_cfg, channels),
                               build_activation_layer(act_cfg)]
                layers.append(nn.ConvTranspose2d(channels, out_channels, 2, 2))
                channels = out_channels
        elif k < 0:
            layers.append(CornerMaxPool2d(2**-k))
        self.resample = nn.Sequential(*layers) if layers else nn.Identity()
        needs_proj = k <= 0 and out_channels != in_channels
        self.proj = nn.Conv2d(in_channels, out_channels, 1, bias=not out_norm) \
            if needs_proj else nn.Identity()
        self.norm = build_norm_2d(norm_cfg, out_channels) if out_norm \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(self.resample(x)))


@torch.fx.wrap
def check_level_input(feat: torch.Tensor, level: int, in_channels: int):
    """Refuse a level input that is not ``(B, in_channels, h, w)`` (a leaf for
    ``torch.fx``: it runs when the traced graph runs)."""
    if feat.dim() != 4 or feat.shape[1] != in_channels:
        raise ValueError(f'SimplePyramid: input of level {level} has shape '
                         f'{tuple(feat.shape)}; expected (B, {in_channels}, h, w)')


class SimplePyramid(BaseModule):
    """Resample single-scale maps to a pyramid (ViTDet's simple feature pyramid).

    Args:
        in_channels (int): channels of the input map(s).
        scales (Sequence[float]): resampling factor of each level, powers of two;
            for a stride-16 input ``(4, 2, 1, 0.5)`` gives strides 4, 8, 16, 32.
            Defaults to ``(4, 2, 1, 0.5)``.
        out_channels (int | Sequence[int], optional): channels of each level (one
            int for all). None keeps ``in_channels``. Defaults to None.
        out_indices (Sequence[int], optional): the levels that are built and
            returned (the others have no parameters). Defaults to all.
        norm_cfg (dict): norm between two transposed convs and at the output of
            each level. ``dict(type='LN')`` is a LayerNorm over the channels of each
            position (ViTDet's choice: independent of the batch size); ``BN``,
            ``SyncBN`` and ``GN`` work as usual. Defaults to ``dict(type='LN')``.
        act_cfg (dict): activation between two transposed convs.
            Defaults to ``dict(type='GELU')``.
        out_norm (bool): a norm at the output of every level. Defaults to True.
        init_cfg (dict | list, optional): mmengine init config.

    Shapes:
        ``forward(x, out_sizes=None)``: ``x`` is one ``(B, in_channels, h, w)``
        map for every level, or a sequence of such maps, one per built level (e.g.
        taken from different blocks). Returns a tuple with one
        ``(B, out_channels[i], h * s_i, w * s_i)`` map per built level (``ceil``
        for ``s_i < 1``); with ``out_sizes`` (one ``(H_i, W_i)`` per built level,
        each at most that size), the maps are cropped at the bottom / right to
        them, e.g. to ``ceil(H / stride_i)`` when the input was padded to a
        multiple of the patch at the bottom / right.
    """

    def __init__(self,
                 in_channels: int,
                 scales: Sequence[float] = (4, 2, 1, 0.5),
                 out_channels: Union[int, Sequence[int], None] = None,
                 out_indices: Optional[Sequence[int]] = None,
                 norm_cfg: dict = dict(type='LN'),
                 act_cfg: dict = dict(type='GELU'),
                 out_norm: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'SimplePyramid: in_channels={in_channels!r} must be a '
                             'positive int')
        scales = tuple(scales)
        if not scales:
            raise ValueError('SimplePyramid: scales must name at least one level')
        num = len(scales)
        if out_channels is None:
            out_channels = [in_channels] * num
        elif isinstance(out_channels, int):
            out_channels = [out_channels] * num
        out_channels = list(out_channels)
        if len(out_channels) != num or not all(
                isinstance(c, int) and c >= 1 for c in out_channels):
            raise ValueError(f'SimplePyramid: out_channels={out_channels} must be '
                             f'one positive int or {num} of them (one per scale '
                             f'of {scales})')
        if out_indices is None:
            out_indices = range(num)
        out_indices = tuple(out_indices)
        bad = [i for i in out_indices if not isinstance(i, int) or not 0 <= i < num]
        if bad or not out_indices or len(set(out_indices)) != len(out_indices):
            raise ValueError(f'SimplePyramid: out_indices={out_indices} must be '
                             f'distinct level indices in [0, {num - 1}]')
        self.in_channels = in_channels
        self.scales = scales
        self.out_indices = tuple(sorted(out_indices))
        self.out_channels = [out_channels[i] for i in self.out_indices]
        self.levels = ModuleDict({
            str(i): PyramidLevel(in_channels, out_channels[i], scales[i], norm_cfg,
                                 act_cfg, out_norm)
            for i in self.out_indices
        })

    def forward(self,
                x: Union[torch.Tensor, Sequence[torch.Tensor]],
                out_sizes: Optional[Sequence[Tuple[int, int]]] = None
                ) -> Tuple[torch.Tensor, ...]:
        num = len(self.out_indices)
        inputs = [x] * num if isinstance(x, torch.Tensor) else list(x)
        if len(inputs) != num:
            raise ValueError(f'SimplePyramid: got {len(inputs)} input maps for '
                             f'{num} levels {self.out_indices}')
        if out_sizes is not None and len(out_sizes) != num:
            raise ValueError(f'SimplePyramid: got {len(out_sizes)} out_sizes for '
                             f'{num} levels {self.out_indices}')
        outs = []
        for j, (i, feat) in enumerate(zip(self.out_indices, inputs)):
            check_level_input(feat, i, self.in_channels)
            out = self.levels[str(i)](feat)
            if out_sizes is not None:
                h, w = out_sizes[j]
                # concrete sizes are checked; traced or symbolic ones (export,
                # torch.compile) stay in the graph: int() would bake them in
                compiling = is_compiling()
                if not compiling and isinstance(h, numbers.Integral) \
                        and isinstance(w, numbers.Integral) \
                        and (h > traced_size(out, 2) or w > traced_size(out, 3)):
                    raise ValueError(f'SimplePyramid: out_sizes[{j}]={(h, w)} is '
                                     f'larger than level {i} ({tuple(out.shape)})')
                if compiling:
                    # a negative padding: a new tensor, whereas the layout of a
                    # slice (contiguous or not) depends on whether the crop is
                    # empty, which dynamo would guard on (one graph per pattern)
                    out = F.pad(out, (0, w - out.shape[3], 0, h - out.shape[2]))
                else:
                    out = out[:, :, :h, :w]
            outs.append(out.contiguous())
        return tuple(outs)
