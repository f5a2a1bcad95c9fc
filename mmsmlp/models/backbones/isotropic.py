"""What the isotropic (single-resolution) backbones of mmsmlp share: ResMLP and
S2-MLP embed ``p x p`` patches once and stack blocks of one width on that grid.

:class:`IsotropicMLPBackbone` holds the patch embedding, the block list, the final
norm and the two output modes:

* **feature maps of blocks** (``with_pyramid=False``, the default; classification):
  ``out_indices`` are block indices (default: the last block); each is returned as
  a ``(B, C, h, w)`` map on the patch grid. The last block's output goes through
  the final norm (``norm``), as the classifier of the paper uses it, so an
  ``ImageClassifier`` with ``GlobalAveragePooling`` and ``LinearClsHead`` computes
  ``head(mean over patches(norm(last block)))``.
* **pyramid** (``with_pyramid=True``; detection / segmentation): ``out_indices``
  are levels of a four-level pyramid at strides 4, 8, 16 and 32 (default all four),
  built by :class:`~mmsmlp.models.utils.SimplePyramid` from the output of one block
  (``pyramid_blocks``, default the last, normalised) or of one block per level.
  Each level ``i`` has shape ``(B, C_i, ceil(H / 2**(i+2)), ceil(W / 2**(i+2)))``,
  like SMLPNet's outputs, whatever the input size.

Inputs of any size of at least 32 x 32 are accepted: sides that are not multiples
of the patch are padded at the bottom / right
(:class:`~mmsmlp.models.utils.PatchEmbed`).
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule

from mmsmlp.utils.compat import register_load_state_dict_pre_hook
from ..utils.patch_embed import PatchEmbed
from ..utils.simple_pyramid import LayerNorm2d, SimplePyramid, build_norm_2d
from ..utils.traced_size import traced_size
from .base_backbone import (MLPBackboneMixin, _is_int, check_bool, check_norm_cfg,
                            check_positive_int, check_rate, check_size,
                            resolve_indices)

PYRAMID_STRIDES = (4, 8, 16, 32)
PYRAMID_CFG_KEYS = ('out_channels', 'norm_cfg', 'act_cfg', 'out_norm')


class IsotropicMLPBackbone(MLPBackboneMixin, BaseModule):
    """Base of :class:`ResMLP` and :class:`S2MLP`; see the module docstring.

    A subclass calls :meth:`_build_embedding`, builds ``self.blocks`` (one module
    per block, ``(B, h, w, C) -> (B, h, w, C)``, channels last) and ``self.norm``
    (the final norm over the last dimension), then calls :meth:`_build_outputs`.

    Blocks after the last one that feeds an output are not run (their parameters
    get no gradient: drop them, freeze them, or use ``find_unused_parameters``
    under DDP).

    ``frozen_stages``: the blocks are the stages. ``k >= 0`` freezes the patch
    embedding and blocks ``0..k`` (and the final norm when ``k`` is the last
    block); the pyramid is never frozen. ``get_layer_depth``: patch embedding 0,
    block ``i`` ``i + 1``, the rest (final norm, pyramid, head) the last depth.
    """

    def _build_embedding(self, name: str, embed_dims: int, num_blocks: int,
                         patch_size: int, img_size, in_channels: int,
                         drop_path_rate: float, with_cp: bool,
                         patch_norm_cfg: Optional[dict] = None) -> List[float]:
        """Check the common arguments and build ``patch_embed``.

        Returns:
            list[float]: the drop-path rate of each block (0 to ``drop_path_rate``).
        """
        self._name = name
        self.embed_dims = check_positive_int(name, 'embed_dims', embed_dims)
        self.num_blocks = check_positive_int(name, 'num_blocks', num_blocks)
        self.patch_size = check_positive_int(name, 'patch_size', patch_size)
        self.in_channels = check_positive_int(name, 'in_channels', in_channels)
        check_rate(name, 'drop_path_rate', drop_path_rate)
        self.with_cp = check_bool(name, 'with_cp', with_cp)
        self.img_size = check_size(name, 'img_size', img_size, self.min_input_size)
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size,
                                      norm_cfg=patch_norm_cfg)
        #: token grid (h, w) of the reference input size ``img_size``
        self.grid_size = tuple(math.ceil(s / patch_size) for s in self.img_size)
        return torch.linspace(0, drop_path_rate, num_blocks, device='cpu').tolist()

    def _build_outputs(self, out_indices, with_pyramid: bool,
                       pyramid_blocks: Union[int, Sequence[int]],
                       pyramid_cfg: Optional[dict], frozen_stages: int,
                       norm_eval: bool):
        """Resolve the outputs, build the pyramid, register the checkpoint check
        and apply ``frozen_stages``. Sets ``out_indices``, ``num_features`` (the
        channels of each output) and ``out_strides``."""
        name, n = self._name, self.num_blocks
        self.with_pyramid = check_bool(name, 'with_pyramid', with_pyramid)
        self.pyramid = None
        if not self.with_pyramid:
            if pyramid_cfg or pyramid_blocks != -1:
                raise ValueError(f'{name}: pyramid_cfg={pyramid_cfg} / '
                                 f'pyramid_blocks={pyramid_blocks!r} are given but '
                                 'with_pyramid=False')
            self.out_indices = resolve_indices(
                name, -1 if out_indices is None else out_indices, n)
            self.num_features = [self.embed_dims] * len(self.out_indices)
            self.out_strides = [self.patch_size] * len(self.out_indices)
            self._level_blocks = ()
            self._taps = set(self.out_indices)
        else:
            levels = len(PYRAMID_STRIDES)
            self.out_indices = resolve_indices(
                name, (0, 1, 2, 3) if out_indices is None else out_indices, levels)
            blocks = [pyramid_blocks] * levels if isinstance(pyramid_blocks, int) \
                else list(pyramid_blocks)
            if len(blocks) != levels or not all(
                    _is_int(b) and -n <= b < n for b in blocks):
                raise ValueError(
                    f'{name}: pyramid_blocks={pyramid_blocks!r} must be one block '
                    f'index or {levels} of them (one per pyramid level), each in '
                    f'[{-n}, {n - 1}]')
            blocks = [b % n for b in blocks]
            self._level_blocks = tuple(blocks[i] for i in self.out_indices)
            self._taps = set(self._level_blocks)
            scales = []
            for stride in PYRAMID_STRIDES:
                k = math.log2(self.patch_size / stride)
                if not k.is_integer():
                    raise ValueError(
                        f'{name}: with_pyramid=True needs a power-of-two patch_size '
                        f'(the pyramid resamples the patch grid by powers of two to '
                        f'strides {PYRAMID_STRIDES}); got patch_size='
                        f'{self.patch_size}')
                scales.append(self.patch_size / stride)
            pyramid_cfg = dict(pyramid_cfg or {})
            unknown = sorted(set(pyramid_cfg) - set(PYRAMID_CFG_KEYS))
            if unknown:
                raise ValueError(f'{name}: pyramid_cfg has unknown keys {unknown}; '
                                 f'accepted: {list(PYRAMID_CFG_KEYS)}')
            if 'norm_cfg' in pyramid_cfg:
                check_norm_cfg(
                    name, 'pyramid_cfg.norm_cfg', pyramid_cfg['norm_cfg'],
                    self.embed_dims,
                    (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, LayerNorm2d),
                    "accepted: type 'BN', 'SyncBN', 'GN' (with num_groups) or 'LN' "
                    '(a LayerNorm over the channels of each position): the pyramid '
                    'normalises (B, C, H, W) maps per channel or position',
                    build=build_norm_2d)
            self.pyramid = SimplePyramid(
                self.embed_dims, scales=scales, out_indices=self.out_indices,
                **pyramid_cfg)
            self.num_features = list(self.pyramid.out_channels)
            self.out_strides = [PYRAMID_STRIDES[i] for i in self.out_indices]
        self._last_tap = max(self._taps)

        self._check_frozen_stages(frozen_stages, n)
        self.frozen_stages = frozen_stages
        self.norm_eval = check_bool(name, 'norm_eval', norm_eval)
        register_load_state_dict_pre_hook(self, self._check_checkpoint_shapes)
        self._freeze_stages()

    # ------------------------------------------------------------------ forward
    def _norm_groups(self):
        """The pyramid levels at strides of at least the patch (identity or max
        pooling of the patch grid) run their norm on a map of that stride; finer
        levels are upsampled (at least 2x2)."""
        if self.pyramid is None:
            return
        for i, stride in zip(self.out_indices, self.out_strides):
            if stride >= self.patch_size:
                yield stride, f'pyramid level {i}', (self.pyramid.levels[str(i)], )

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Shapes: input ``(B, in_channels, H, W)``, H, W >= 32. Output: a tuple
        with one ``(B, C, ceil(H / p), ceil(W / p))`` map per out index (block
        mode, ``p`` = patch size) or one ``(B, C_i, ceil(H / s_i), ceil(W /
        s_i))`` map per pyramid level ``i`` (``s_i = 4 * 2**i``)."""
        self._check_input(x)
        height, width = traced_size(x, 2), traced_size(x, 3)
        x = self.patch_embed(x).permute(0, 2, 3, 1).contiguous()  # (B, h, w, C)
        feats = {}
        last = self.num_blocks - 1
        for i, block in enumerate(self.blocks):
            x = self._run_block(block, x)
            if i in self._taps:
                out = self.norm(x) if i == last else x
                feats[i] = out.permute(0, 3, 1, 2)  # (B, C, h, w)
            if i == self._last_tap:
                break  # later blocks cannot change any output
        if self.pyramid is None:
            return tuple(feats[i].contiguous() for i in self.out_indices)
        # ceil(n / s) in integer arithmetic on the input sizes (exact, symbolic when
        # traced), on non-negative numbers only: ONNX divides integers rounding
        # towards zero, so -(-n // s) would become floor(n / s) in an exported graph
        sizes = [((height + s - 1) // s, (width + s - 1) // s)
                 for s in self.out_strides]
        return self.pyramid([feats[b] for b in self._level_blocks], sizes)

    # ----------------------------------------------------------------- switches
    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            self._freeze(self.patch_embed)
        for i in range(self.frozen_stages + 1):
            self._freeze(self.blocks[i])
        if self.frozen_stages == self.num_blocks - 1:
            self._freeze(self.norm)

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer-wise depth of a parameter, for layer-wise lr decay.

        The patch embedding is depth 0, block ``i`` is depth ``i + 1``; the final
        norm, the pyramid and anything outside the backbone (the head) are the
        last depth ``num_blocks + 1``.

        Returns:
            tuple[int, int]: the layer depth and the number of depths.
        """
        num_layers = self.num_blocks + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('patch_embed.'):
            return 0, num_layers
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num_layers
        return num_layers - 1, num_layers
