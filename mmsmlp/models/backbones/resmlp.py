"""ResMLP: "ResMLP: Feedforward networks for image classification with
data-efficient training" (Touvron et al., arXiv 2105.03404), as an mmsmlp backbone.

The function is the one of timm's ``resmlp_12_224`` / ``resmlp_24_224`` /
``resmlp_36_224`` / ``resmlp_big_24_224`` (same parameters, same forward; see
``tools/model_converters/timm_resmlp2mmsmlp.py``), with two additions: inputs of
any size (the token-mixing matrix is resized to the current patch grid by
:class:`~mmsmlp.models.utils.TokenMixing`) and a feature pyramid for detection and
segmentation (:class:`~mmsmlp.models.backbones.isotropic.IsotropicMLPBackbone`).
"""
from functools import partial
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import ModuleList
from timm.layers import Mlp

from mmsmlp.registry import MODELS
from ..utils.token_mixing import TokenMixing
from .base_backbone import (check_mlp_ratio, check_positive_number,
                            init_cfg_from_pretrained, resolve_arch)
from .isotropic import IsotropicMLPBackbone


class Affine(nn.Module):
    """ResMLP's normalisation ``Aff(x) = alpha * x + beta`` over the last dimension.

    Args:
        dims (int): C. ``alpha`` starts at ones and ``beta`` at zeros, shape ``(C,)``.

    Shapes:
        input and output ``(..., C)``.
    """

    def __init__(self, dims: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dims))
        self.beta = nn.Parameter(torch.zeros(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta, self.alpha, x)

    def extra_repr(self) -> str:
        return f'{self.alpha.numel()}'


def default_layer_scale(num_blocks: int) -> float:
    """LayerScale initial value of timm's ResMLP presets for a depth: 1e-4 up to
    12 blocks, 1e-5 up to 24, 1e-6 beyond. (The paper gives 0.1 for depth 12;
    timm's ``resmlp_12_224`` uses 1e-4, and so do we.)"""
    if num_blocks <= 12:
        return 1e-4
    if num_blocks <= 24:
        return 1e-5
    return 1e-6


class ResMLPBlock(nn.Module):
    """One ResMLP layer (eq. 1-2 of the paper), two residual branches::

        x = x + drop_path(ls1 * token_mix(Aff1(x)))     # over the patches
        x = x + drop_path(ls2 * channel_mlp(Aff2(x)))   # over the channels

    ``token_mix`` is one ``Linear(N, N)`` over the ``N = h * w`` patches of the
    reference grid (a :class:`TokenMixing` over the 2-D grid, resized to other
    grids); ``channel_mlp`` is ``Linear(C, rC) -> GELU -> Linear(rC, C)``;
    ``ls1`` / ``ls2`` are LayerScale vectors ``(C,)``.

    Shapes:
        input and output ``(B, h, w, C)`` (channels last), any ``h``, ``w``.
    """

    def __init__(self,
                 dims: int,
                 grid_size: Tuple[int, int],
                 mlp_ratio: float = 4.,
                 layer_scale_init: float = 1e-4,
                 drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='GELU'),
                 interpolate_mode: str = 'bilinear'):
        super().__init__()
        self.norm1 = Affine(dims)
        self.token_mix = TokenMixing(grid_size, interpolate_mode=interpolate_mode)
        self.ls1 = nn.Parameter(torch.full((dims, ), float(layer_scale_init)))
        self.norm2 = Affine(dims)
        self.channel_mlp = Mlp(dims, int(dims * mlp_ratio),
                               act_layer=partial(build_activation_layer, act_cfg))
        self.ls2 = nn.Parameter(torch.full((dims, ), float(layer_scale_init)))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1 * self.token_mix(self.norm1(x), dim=1))
        return x + self.drop_path(self.ls2 * self.channel_mlp(self.norm2(x)))


@MODELS.register_module()
class ResMLP(IsotropicMLPBackbone):
    """ResMLP backbone (arXiv 2105.03404): patches, then a stack of ResMLP layers.

    A ``p x p`` stride-``p`` patch convolution, ``num_blocks`` :class:`ResMLPBlock`
    (Affine "norms", token-mixing ``Linear(N, N)`` over the patches, channel MLP,
    LayerScale on both branches) and a final Affine norm. With the same weights it
    computes the same function as timm's ResMLP models at their resolution.

    The token-mixing weights belong to the reference grid ``img_size / p`` (14 x 14
    at 224 with p = 16) and are resized to the patch grid of every input by
    :class:`~mmsmlp.models.utils.TokenMixing` (the weights are treated as a kernel
    over (h, w) x (h, w); exactly the stored weights at the reference grid), so any
    input of at least 32 x 32 works; sides that are not multiples of ``p`` are
    padded at the bottom / right. On another grid the patches are resampled onto
    the reference grid, mixed and resampled back, so the mixing never costs more
    than at the reference size plus two interpolations.

    Presets (timm's; LayerScale init values from timm's ``resmlp_*`` functions).
    Params / FLOPs of the classifier (``GlobalAveragePooling`` + 1000-class
    ``LinearClsHead``) at 224, measured with mmengine's ``parameter_count`` and
    ``FlopAnalyzer`` (one multiply-add = one FLOP); the paper's figures (as in
    ``smlpnet-facts.md``) in brackets:

    ======  ====  ======  =====  ==========  ===============  =============
    arch    C     blocks  patch  LayerScale  params           FLOPs
    ======  ====  ======  =====  ==========  ===============  =============
    s12     384   12      16     1e-4        15.35M (15.4M)   3.01G (3.0G)
    s24     384   24      16     1e-5        30.02M (30.0M)   5.96G (6.0G)
    s36     384   36      16     1e-6        44.69M (44.7M)   8.91G (8.9G)
    b24     768   24      8      1e-6        129.14M          100.23G
    ======  ====  ======  =====  ==========  ===============  =============

    The paper initialises LayerScale at 0.1 for depth 12; timm's ``resmlp_12_224``
    uses 1e-4, which we follow (it only matters when training from scratch).

    Args:
        arch (str | dict): a preset above, or a dict with ``embed_dims`` (C),
            ``num_blocks`` and optionally ``patch_size`` (16), ``mlp_ratio`` (4)
            and ``layer_scale_init`` (None: by depth, see
            :func:`default_layer_scale`). Defaults to ``'s12'``.
        img_size (int | tuple): reference input size of the token-mixing weights.
            Defaults to 224.
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
        act_cfg (dict): activation of the channel MLP. Defaults to GELU.
        interpolate_mode (str): ``F.interpolate`` mode of the resampling between
            the patch grid and the reference grid. Defaults to ``'bilinear'``.
        frozen_stages (int): -1 freezes nothing; ``k >= 0`` freezes the patch
            embedding and blocks ``0..k`` (the final norm too when ``k`` is the
            last block). Defaults to -1.
        norm_eval (bool): keep BatchNorm layers (of a BN pyramid) in eval mode
            while training. Defaults to False.
        with_cp (bool): activation checkpointing per block. Defaults to False.
        pretrained (str, optional): deprecated, same as ``init_cfg=dict(
            type='Pretrained', checkpoint=pretrained)``.
        init_cfg (dict | list, optional): defaults to the paper's init: truncated
            normal (std 0.02) for the Linear and token-mixing weights, zero biases.

    Shapes:
        input ``(B, in_channels, H, W)`` with H, W >= 32; output: a tuple of
        ``(B, C, ceil(H / p), ceil(W / p))`` maps (block outputs) or of
        ``(B, C_i, ceil(H / 2**(i+2)), ceil(W / 2**(i+2)))`` maps (pyramid).
    """

    arch_zoo = {
        's12': dict(embed_dims=384, num_blocks=12, patch_size=16, mlp_ratio=4,
                    layer_scale_init=1e-4),
        's24': dict(embed_dims=384, num_blocks=24, patch_size=16, mlp_ratio=4,
                    layer_scale_init=1e-5),
        's36': dict(embed_dims=384, num_blocks=36, patch_size=16, mlp_ratio=4,
                    layer_scale_init=1e-6),
        'b24': dict(embed_dims=768, num_blocks=24, patch_size=8, mlp_ratio=4,
                    layer_scale_init=1e-6),
    }

    def __init__(self,
                 arch: Union[str, dict] = 's12',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int], None] = None,
                 with_pyramid: bool = False,
                 pyramid_blocks: Union[int, Sequence[int]] = -1,
                 pyramid_cfg: Optional[dict] = None,
                 drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='GELU'),
                 interpolate_mode: str = 'bilinear',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg=dict(type='TruncNormal', layer=['Linear', 'TokenMixing'],
                               std=.02, bias=0.)):
        super().__init__(
            init_cfg=init_cfg_from_pretrained('ResMLP', pretrained, init_cfg))
        settings = resolve_arch(
            'ResMLP', arch, self.arch_zoo, required=('embed_dims', 'num_blocks'),
            optional=dict(patch_size=16, mlp_ratio=4, layer_scale_init=None))
        dpr = self._build_embedding(
            'ResMLP', settings['embed_dims'], settings['num_blocks'],
            settings['patch_size'], img_size, in_channels, drop_path_rate, with_cp)
        self.mlp_ratio = check_mlp_ratio('ResMLP', settings['mlp_ratio'],
                                         self.embed_dims)
        self.layer_scale_init = settings['layer_scale_init']
        if self.layer_scale_init is None:
            self.layer_scale_init = default_layer_scale(self.num_blocks)
        check_positive_number('ResMLP', 'layer_scale_init', self.layer_scale_init)
        self.blocks = ModuleList([
            ResMLPBlock(self.embed_dims, self.grid_size, self.mlp_ratio,
                        self.layer_scale_init, rate, act_cfg, interpolate_mode)
            for rate in dpr
        ])
        self.norm = Affine(self.embed_dims)
        self._build_outputs(out_indices, with_pyramid, pyramid_blocks, pyramid_cfg,
                            frozen_stages, norm_eval)
