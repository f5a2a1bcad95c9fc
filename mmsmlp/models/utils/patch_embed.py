"""Non-overlapping patch embedding that accepts any input size."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from .traced_size import is_fixed_size_tracing, traced_size


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.) -> torch.Tensor:
    """Pad the bottom and right of ``(B, C, H, W)`` with ``value`` (zeros by
    default) to multiples of ``multiple``, as mmcv's
    ``AdaptivePadding(padding='corner')`` does for a kernel equal to its stride; a
    no-op for multiples. Written without a branch on the size, so a traced or
    exported graph pads every input size correctly."""
    h, w = traced_size(x, 2), traced_size(x, 3)
    # ceil(n / m) * m - n by floor division of non-negative numbers: symbolic
    # sizes compile to it (not to a modulo, which inductor cannot yet generate for
    # symbolic sizes), and ONNX's integer division (rounding towards zero) agrees
    pad_h = (h + multiple - 1) // multiple * multiple - h
    pad_w = (w + multiple - 1) // multiple * multiple - w
    if is_fixed_size_tracing():
        # a graph for one size: constant blocks concatenated, as the
        # TorchScript-based ONNX exporter infers no shape through a Pad (and the
        # ONNX forms of some later ops need every shape)
        b, c = traced_size(x, 0), traced_size(x, 1)
        if pad_w:
            x = torch.cat([x, x.new_full((b, c, h, pad_w), value)], dim=3)
        if pad_h:
            x = torch.cat([x, x.new_full((b, c, pad_h, w + pad_w), value)], dim=2)
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), value=value)


class PatchEmbed(nn.Module):
    """``p x p`` patches with stride ``p``: corner padding to multiples of ``p``,
    a ``Conv2d(in, out, p, stride=p)`` and an optional norm over the channels.

    The parameter names are those of mmcv's ``PatchEmbed`` (``projection``,
    ``norm``), so checkpoints of either load into the other; unlike it, the output
    is a map and the padding traces (see :func:`pad_to_multiple`).

    Args:
        in_channels (int): input channels.
        embed_dims (int): output channels.
        patch_size (int): p.
        bias (bool): bias of the projection. Defaults to True.
        norm_cfg (dict, optional): a norm over the channels (e.g. ``LN``).

    Shapes:
        ``(B, in_channels, H, W)`` -> ``(B, embed_dims, ceil(H / p), ceil(W / p))``.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 patch_size: int,
                 bias: bool = True,
                 norm_cfg: Optional[dict] = None):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_channels, embed_dims, patch_size,
                                    stride=patch_size, bias=bias)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1] if norm_cfg else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection(pad_to_multiple(x, self.patch_size))
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x
