"""S2-MLP: "S2-MLP: Spatial-Shift MLP Architecture for Vision" (Yu et al., WACV
2022, arXiv 2106.07477), as an mmsmlp backbone.

Patches communicate only through a parameter-free *spatial shift*: the channels are
split in four groups, shifted by one patch to the right, left, bottom and top.

The spatial shift here is written **out of place**. The paper's pseudo-code, and
many public copies of it, write it as four in-place slice assignments such as
``x[:, 1:, :, :c//4] = x[:, :w-1, :, :c//4]``. Read with value semantics (NumPy
copies overlapping slices first) that is the intended shift; in PyTorch the source
and destination overlap in memory and are copied element by element in order, so
the first row is smeared along the whole axis instead (or PyTorch refuses the
copy). ``tests/test_models/test_backbones/test_s2mlp.py`` shows both.
"""
from functools import partial
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import ModuleList
from timm.layers import Mlp

from mmsmlp.registry import MODELS
from ..utils.traced_size import traced_size
from .base_backbone import (check_bool, check_mlp_ratio, check_norm_cfg,
                            check_positive_int, init_cfg_from_pretrained,
                            resolve_arch)
from .isotropic import IsotropicMLPBackbone


@torch.fx.wrap  # a leaf for torch.fx: its input check runs with the graph
def spatial_shift(x: torch.Tensor) -> torch.Tensor:
    """The S2-MLP spatial shift of a channels-last map, out of place.

    The ``C`` channels are split at ``C//4``, ``C//2`` and ``3*C//4`` into four
    groups; group 1 is shifted by one position along the width towards larger
    indices (right), group 2 along the width towards smaller indices (left), group
    3 along the height towards larger indices (down), group 4 along the height
    towards smaller indices (up): e.g. for group 1, ``out[:, i, j] = x[:, i, j-1]``
    for ``j >= 1``. The row / column left empty by a shift keeps its input values
    (``out[:, i, 0] = x[:, i, 0]``): the slice-assignment pseudo-code of the
    paper (and of its public copies) leaves it unchanged.

    Args:
        x (Tensor): ``(B, H, W, C)``, any ``H, W >= 1`` and ``C``.

    Returns:
        Tensor: a new ``(B, H, W, C)`` tensor; ``x`` is not modified.
    """
    if x.dim() != 4:
        raise ValueError(f'spatial_shift: input must be (B, H, W, C), got shape '
                         f'{tuple(x.shape)}')
    c = traced_size(x, -1)
    # slices, not torch.tensor_split: the TorchScript-based ONNX exporter writes a
    # Tile that onnxruntime refuses for tensor_split with a dynamic spatial size
    g1, g2 = x[..., :c // 4], x[..., c // 4:c // 2]
    g3, g4 = x[..., c // 2:3 * c // 4], x[..., 3 * c // 4:]
    right = torch.cat([g1[:, :, :1], g1[:, :, :-1]], dim=2)
    left = torch.cat([g2[:, :, 1:], g2[:, :, -1:]], dim=2)
    down = torch.cat([g3[:, :1], g3[:, :-1]], dim=1)
    up = torch.cat([g4[:, 1:], g4[:, -1:]], dim=1)
    return torch.cat([right, left, down, up], dim=-1)


class SpatialShiftMLP(nn.Module):
    """``Linear(C, C) -> act -> spatial shift -> Linear(C, C)``: the token-mixing
    branch of an S2-MLP block.

    Shapes:
        input and output ``(B, H, W, C)``.
    """

    def __init__(self, dims: int, act_cfg: dict = dict(type='GELU')):
        super().__init__()
        self.fc1 = nn.Linear(dims, dims)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Linear(dims, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(spatial_shift(self.act(self.fc1(x))))


class S2MLPBlock(nn.Module):
    """One S2-MLP block: four Linear layers, two LayerNorms, two GELUs, two
    residual connections and the spatial shift (Sec. 3 of the paper)::

        x = x + drop_path(spatial_mlp(LN1(x)))    # FC -> GELU -> shift -> FC
        x = x + drop_path(channel_mlp(LN2(x)))    # FC(C, rC) -> GELU -> FC(rC, C)

    Shapes:
        input and output ``(B, H, W, C)`` (channels last), any H and W.
    """

    def __init__(self,
                 dims: int,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 act_cfg: dict = dict(type='GELU')):
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, dims)[1]
        self.spatial_mlp = SpatialShiftMLP(dims, act_cfg)
        self.norm2 = build_norm_layer(norm_cfg, dims)[1]
        self.channel_mlp = Mlp(dims, int(dims * mlp_ratio),
                               act_layer=partial(build_activation_layer, act_cfg))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.spatial_mlp(self.norm1(x)))
        return x + self.drop_path(self.channel_mlp(self.norm2(x)))


@MODELS.register_module()
class S2MLP(IsotropicMLPBackbone):
    """S2-MLP backbone (arXiv 2106.07477): patches, then a stack of S2-MLP blocks.

    A ``p x p`` stride-``p`` patch projection followed by a LayerNorm (the paper's
    patch embedding, Sec. 3.1), ``num_blocks`` :class:`S2MLPBlock` and, by default,
    a final LayerNorm (``final_norm``; the paper pools the last block's output
    directly: ``final_norm=False``). No weight depends on the input size: any
    input of at least 32 x 32 works, sides that are not multiples of ``p`` are
    padded at the bottom / right.

    Presets: the paper's S2-MLP-wide and S2-MLP-deep. The paper's Table 1 gives
    wide 71M params / 14.0G FLOPs / 80.0 top-1 and deep 51M / 10.5G / 80.7 at 224.
    The layer settings below (patch 16, wide: C = 768, 12 blocks, expansion 4;
    deep: C = 384, 36 blocks, expansion 4) are those of public re-implementations
    (e.g. ``S2MLPv1_wide`` / ``S2MLPv1_deep`` of liuruiyang98/Jittor-MLP), checked
    here by FLOPs: they reproduce the paper's FLOPs within 0.01G, whereas a 14-px
    patch (256 patches: 18.1G for wide) or a deep model with C = 512 and expansion
    3 (14.9G, 76.6M) do not. Params / FLOPs of the classifier
    (``GlobalAveragePooling`` + 1000-class ``LinearClsHead``) at 224, measured with
    mmengine's ``parameter_count`` and ``FlopAnalyzer`` (one multiply-add = one
    FLOP); the paper's Table 1 in brackets:

    ======  ====  ======  =========  =====  ===============  =============
    arch    C     blocks  mlp_ratio  patch  params           FLOPs
    ======  ====  ======  =========  =====  ===============  =============
    wide    768   12      4          16     72.24M (71M)     14.01G (14.0G)
    deep    384   36      4          16     53.92M (51M)     10.49G (10.5G)
    ======  ====  ======  =========  =====  ===============  =============

    The parameter counts differ from the paper's: wide's 71M matches the count
    without the classifier (71.47M); for deep, no isotropic setting with 196
    patches and 10.5G FLOPs has 51M parameters (FLOPs / 196 patches ~ 53.5M
    weights), so we keep the settings that reproduce the FLOPs.

    Args:
        arch (str | dict): ``'wide'`` (``'w'``), ``'deep'`` (``'d'``), or a dict
            with ``embed_dims`` (C), ``num_blocks`` and optionally ``patch_size``
            (16) and ``mlp_ratio`` (4). Defaults to ``'wide'``.
        img_size (int | tuple): reference input size (only sets the nominal grid
            ``grid_size``; S2-MLP has no size-dependent weights). Defaults to 224.
        in_channels (int): input channels. Defaults to 3.
        out_indices (int | Sequence[int], optional): block indices
            (``with_pyramid=False``; default ``-1``, the last block, normalised)
            or pyramid levels 0-3 at strides 4-32 (``with_pyramid=True``; default
            all four). See :mod:`~mmsmlp.models.backbones.isotropic`.
        with_pyramid (bool): return a 4-level pyramid for FPN / UperNet.
            Defaults to False.
        pyramid_blocks (int | Sequence[int]): the block feeding the pyramid, or
            one block per level. Defaults to -1 (the last block, normalised).
        pyramid_cfg (dict, optional): ``out_channels``, ``norm_cfg``, ``act_cfg``,
            ``out_norm`` of the :class:`~mmsmlp.models.utils.SimplePyramid`.
        drop_path_rate (float): stochastic depth, growing linearly over the blocks
            from 0 to this value. Defaults to 0.
        norm_cfg (dict): the LayerNorms (blocks, patch embedding, final).
            Defaults to ``dict(type='LN')``.
        act_cfg (dict): activation of both branches. Defaults to GELU.
        patch_norm (bool): LayerNorm after the patch projection. Defaults to True.
        final_norm (bool): LayerNorm after the last block. Defaults to True.
        frozen_stages (int): -1 freezes nothing; ``k >= 0`` freezes the patch
            embedding and blocks ``0..k`` (the final norm too when ``k`` is the
            last block). Defaults to -1.
        norm_eval (bool): keep BatchNorm layers (of a BN pyramid) in eval mode
            while training. Defaults to False.
        with_cp (bool): activation checkpointing per block. Defaults to False.
        pretrained (str, optional): deprecated, same as ``init_cfg=dict(
            type='Pretrained', checkpoint=pretrained)``.
        init_cfg (dict | list, optional): defaults to truncated normal (std 0.02)
            Linear weights with zero biases and unit LayerNorms.

    Shapes:
        input ``(B, in_channels, H, W)`` with H, W >= 32; output: a tuple of
        ``(B, C, ceil(H / p), ceil(W / p))`` maps (block outputs) or of
        ``(B, C_i, ceil(H / 2**(i+2)), ceil(W / 2**(i+2)))`` maps (pyramid).
    """

    arch_zoo = {
        **dict.fromkeys(['w', 'wide'],
                        dict(embed_dims=768, num_blocks=12, patch_size=16,
                             mlp_ratio=4)),
        **dict.fromkeys(['d', 'deep'],
                        dict(embed_dims=384, num_blocks=36, patch_size=16,
                             mlp_ratio=4)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'wide',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int], None] = None,
                 with_pyramid: bool = False,
                 pyramid_blocks: Union[int, Sequence[int]] = -1,
                 pyramid_cfg: Optional[dict] = None,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 act_cfg: dict = dict(type='GELU'),
                 patch_norm: bool = True,
                 final_norm: bool = True,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg=[
                     dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                     dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
                 ]):
        super().__init__(
            init_cfg=init_cfg_from_pretrained('S2MLP', pretrained, init_cfg))
        settings = resolve_arch(
            'S2MLP', arch, self.arch_zoo, required=('embed_dims', 'num_blocks'),
            optional=dict(patch_size=16, mlp_ratio=4))
        for arg, value in (('patch_norm', patch_norm), ('final_norm', final_norm)):
            check_bool('S2MLP', arg, value)
        # before the patch embedding builds its norm
        check_norm_cfg(
            'S2MLP', 'norm_cfg', norm_cfg,
            check_positive_int('S2MLP', 'embed_dims', settings['embed_dims']),
            (nn.LayerNorm, ), "accepted: dict(type='LN') (an nn.LayerNorm): "
            "S2-MLP's norms normalise the channels of each token of (B, H, W, C) "
            'maps, their last dimension', exact=True)
        dpr = self._build_embedding(
            'S2MLP', settings['embed_dims'], settings['num_blocks'],
            settings['patch_size'], img_size, in_channels, drop_path_rate, with_cp,
            patch_norm_cfg=norm_cfg if patch_norm else None)
        self.mlp_ratio = check_mlp_ratio('S2MLP', settings['mlp_ratio'],
                                         self.embed_dims)
        self.blocks = ModuleList([
            S2MLPBlock(self.embed_dims, self.mlp_ratio, rate, norm_cfg, act_cfg)
            for rate in dpr
        ])
        self.norm = build_norm_layer(norm_cfg, self.embed_dims)[1] if final_norm \
            else nn.Identity()
        self._build_outputs(out_indices, with_pyramid, pyramid_blocks, pyramid_cfg,
                            frozen_stages, norm_eval)
