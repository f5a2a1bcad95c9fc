"""sMLPNet: "Sparse MLP for Image Recognition: Is Self-Attention Really Necessary?"
(Tang et al., AAAI 2022, arXiv 2109.05422), as a multi-scale backbone."""
import math
from functools import partial
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import BaseModule, ModuleList
from mmengine.utils import to_2tuple
from timm.layers import Mlp

from mmsmlp.registry import MODELS
from ..utils.fused_smlp import fast_paths_enabled, fused_sparse_mlp, records_grad
from ..utils.token_mixing import TokenMixing
from .base_backbone import (MLPBackboneMixin, init_cfg_from_pretrained,
                            resolve_arch, resolve_indices)


FUSE_MODES = ('concat', 'sum', 'weighted_sum')
BRANCH_MODES = ('parallel', 'sequential')


class SparseMLP(nn.Module):
    """The sMLP token mixing: ``fuse(concat[x, mix_width(x), mix_height(x)])``.

    Each axial mixing is one ``Linear(N, N)`` over one spatial axis, shared by all
    channels and all rows (columns); ``fuse`` is a ``Linear(3C, C)`` without bias.
    The other settings are the paper's ablations (Tables 3 and 4).

    Args:
        channels (int): C.
        grid_size (tuple[int, int]): reference token grid (H, W) of the weights.
        interpolate_mode (str): how the axial weights are resized to another grid.
        cache_size (int): resized weights kept per axis for inference.
        fuse_mode (str): ``'concat'`` (concat + ``Linear(kC, C)``, the paper's
            default), ``'sum'`` (branches added) or ``'weighted_sum'`` (branches
            added with a learned weight per branch and channel).
        branch_mode (str): ``'parallel'`` (both axial mixings read ``x``) or
            ``'sequential'`` (the height mixing reads the width-mixed tensor).
        identity (bool): keep the identity branch ``x``. Defaults to True.

    Shapes:
        input and output ``(B, H, W, C)`` (channels last), any H and W.
    """

    def __init__(self,
                 channels: int,
                 grid_size: Tuple[int, int],
                 interpolate_mode: str = 'bilinear',
                 cache_size: int = 8,
                 fuse_mode: str = 'concat',
                 branch_mode: str = 'parallel',
                 identity: bool = True):
        super().__init__()
        if fuse_mode not in FUSE_MODES:
            raise ValueError(f'fuse_mode={fuse_mode!r}; accepted: {FUSE_MODES}')
        if branch_mode not in BRANCH_MODES:
            raise ValueError(f'branch_mode={branch_mode!r}; accepted: {BRANCH_MODES}')
        kw = dict(interpolate_mode=interpolate_mode, cache_size=cache_size)
        self.mix_height = TokenMixing(grid_size[0], **kw)
        self.mix_width = TokenMixing(grid_size[1], **kw)
        self.fuse_mode, self.branch_mode, self.identity = fuse_mode, branch_mode, identity
        self.num_branches = 3 if identity else 2
        if fuse_mode == 'concat':
            self.fuse = nn.Linear(self.num_branches * channels, channels, bias=False)
        elif fuse_mode == 'weighted_sum':
            self.fuse_weight = nn.Parameter(torch.ones(self.num_branches, channels))

    def forward(self, x: torch.Tensor,
                shortcut: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: ``(B, H, W, C)``; ``shortcut`` (same shape, optional) is added to
        the result. Returns a ``(B, H, W, C)`` tensor."""
        if (self.fuse_mode == 'concat' and self.branch_mode == 'parallel'
                and self.identity and fast_paths_enabled()):
            return self._forward_fused(x, shortcut)
        out = self._forward_plain(x)
        return out if shortcut is None else out + shortcut

    def _forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        # every setting; also what jit tracing (FlopAnalyzer) and torch.compile see
        _, h, w, _ = x.shape
        x_w = self.mix_width(x, dim=2, grid=(w, ))
        x_h = self.mix_height(x_w if self.branch_mode == 'sequential' else x,
                              dim=1, grid=(h, ))
        branches = (x, x_w, x_h) if self.identity else (x_w, x_h)
        if self.fuse_mode == 'concat':
            # fuse(concat[...]) as a sum of per-branch products: the kC-channel
            # tensor is never built
            parts = self.fuse.weight.chunk(self.num_branches, dim=1)
            out = F.linear(branches[0], parts[0])
            for b, part in zip(branches[1:], parts[1:]):
                out = out + F.linear(b, part)
            return out
        if self.fuse_mode == 'weighted_sum':
            return sum(b * wt for b, wt in zip(branches, self.fuse_weight))
        return sum(branches)

    def _forward_fused(self, x: torch.Tensor,
                       shortcut: Optional[torch.Tensor]) -> torch.Tensor:
        # the default setting in eager mode: one autograd node whose only
        # element-wise pass is the residual add (see mmsmlp.models.utils.fused_smlp)
        _, h, w, _ = x.shape
        tensors = (x, *self.mix_width.resized((w, )),
                   *self.mix_height.resized((h, )), self.fuse.weight)
        # in-place products are not autocast-aware: cast as autocast would
        dtype = x.dtype
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
        # a shortcut of a wider type (the fp32 residual stream under autocast)
        # is added afterwards, so that the stream keeps its precision
        fold = shortcut is not None and shortcut.dtype == dtype
        out = fused_sparse_mlp(*(t.to(dtype) for t in tensors),
                               shortcut=shortcut if fold else None)
        return out if fold or shortcut is None else out + shortcut


class SMLPBlock(BaseModule):
    """One sMLPNet block: two residual branches sharing one drop-path rate.

    * token mixing: ``BN -> act -> depthwise 3x3`` (local, ``local_mix``) then
      ``BN -> act -> sMLP`` (global, ``global_mix``); either may be switched off
      (the paper's Tables 1 and 2), ``smlp_cfg`` goes to :class:`SparseMLP`;
    * channel mixing: ``LN -> Linear(C, rC) -> act -> Linear(rC, C)``.

    Shapes:
        input and output ``(B, C, H, W)``; kept in ``channels_last`` memory so
        that the channel-last views used by sMLP and the MLP are free.
    """

    def __init__(self,
                 channels: int,
                 grid_size: Tuple[int, int],
                 mlp_ratio: float = 3.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 channel_norm_cfg: dict = dict(type='LN'),
                 act_cfg: dict = dict(type='GELU'),
                 interpolate_mode: str = 'bilinear',
                 cache_size: int = 8,
                 with_cp: bool = False,
                 local_mix: bool = True,
                 global_mix: bool = True,
                 smlp_cfg: dict = dict(),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not (local_mix or global_mix):
            raise ValueError('an sMLP block needs local_mix or global_mix (sMLP) '
                             'for its token mixing')
        self.with_cp = with_cp
        self.act = build_activation_layer(act_cfg)
        if local_mix:
            self.local_norm = build_norm_layer(norm_cfg, channels)[1]
            self.local_mix = nn.Conv2d(
                channels, channels, 3, padding=1, groups=channels, bias=False)
        if global_mix:
            self.global_norm = build_norm_layer(norm_cfg, channels)[1]
            self.sparse_mlp = SparseMLP(channels, grid_size, interpolate_mode,
                                        cache_size, **smlp_cfg)
        self.channel_norm = build_norm_layer(channel_norm_cfg, channels)[1]
        self.channel_mlp = Mlp(
            channels,
            int(round(channels * mlp_ratio)),
            act_layer=partial(build_activation_layer, act_cfg))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 \
            else nn.Identity()

    @staticmethod
    def _activate(act: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """``act(y)`` for a fresh tensor ``y`` of the block's own. GELU runs on
        the contiguous view of a channels-last map, and in place when autograd
        does not record it (inference: one buffer and one pass over memory
        less, as ``ReLU(inplace=True)``)."""
        if not (isinstance(act, nn.GELU) and fast_paths_enabled()):
            return act(y)
        if y.dim() == 4 and not y.is_contiguous() and y.is_contiguous(
                memory_format=torch.channels_last):
            # torch's CPU GELU (forward and backward) takes oneDNN's kernel for
            # contiguous tensors only, ATen's (up to 2x slower) for a
            # channels-last map: use its contiguous (B, H, W, C) view
            return SMLPBlock._activate(act, y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if not records_grad(y):
            return torch.ops.aten.gelu_(y, approximate=act.approximate)
        return act(y)

    def _drop_path_active(self) -> bool:
        return isinstance(self.drop_path, DropPath) and self.drop_path.training

    def _add_shortcut(self, branch: torch.Tensor,
                      shortcut: torch.Tensor) -> torch.Tensor:
        """``shortcut + drop_path(branch)``, written into ``branch``'s buffer when
        that is a fresh tensor of its own and of the same type (autograd would
        have to copy around an in-place update of a view; the residual stream
        keeps its fp32 under autocast). Compiled graphs fuse the add anyway."""
        branch = self.drop_path(branch)
        if (not fast_paths_enabled() or branch.dtype != shortcut.dtype
                or branch._is_view()):
            return branch + shortcut
        return branch.add_(shortcut)

    def token_mix(self, x: torch.Tensor) -> torch.Tensor:
        """``x + drop_path(token mixing(x))``: ``(B, C, H, W)`` -> ``(B, H, W, C)``."""
        shortcut = x.permute(0, 2, 3, 1)
        y = x
        if hasattr(self, 'local_mix'):
            y = self._activate(self.act, self.local_norm(y))
            if hasattr(self, 'sparse_mlp') and self._global_norm_foldable():
                # eval-mode BN after the depthwise conv is an affine map per
                # channel: one conv with scaled weights and a bias, one pass less
                bn, conv = self.global_norm, self.local_mix
                scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
                y = F.conv2d(y, conv.weight * scale.view(-1, 1, 1, 1),
                             bn.bias - bn.running_mean * scale,
                             padding=conv.padding, groups=conv.groups)
                return self._mix_globally(self._activate(self.act, y), shortcut)
            y = self.local_mix(y)
        if not hasattr(self, 'sparse_mlp'):
            return self._add_shortcut(y.permute(0, 2, 3, 1), shortcut)
        y = self._activate(self.act, self.global_norm(y))
        return self._mix_globally(y, shortcut)

    def _global_norm_foldable(self) -> bool:
        bn = self.global_norm
        return (isinstance(bn, nn.modules.batchnorm._BatchNorm)
                and not bn.training and bn.running_var is not None and bn.affine
                and fast_paths_enabled())

    def _mix_globally(self, y: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """sMLP on the normalised, activated map ``y`` ``(B, C, H, W)`` plus the
        shortcut ``(B, H, W, C)``."""
        y = y.permute(0, 2, 3, 1)
        if self._drop_path_active():
            return self._add_shortcut(self.sparse_mlp(y), shortcut)
        # no drop path: sMLP accumulates onto the shortcut in its own buffer
        return self.sparse_mlp(y, shortcut=shortcut)

    def channel_mix(self, x: torch.Tensor, reuse_input: bool = False) -> torch.Tensor:
        """``x + drop_path(MLP(LN(x)))`` on ``(B, H, W, C)``. ``reuse_input``: ``x``
        is a temporary the caller gives up; without autograd the result is
        written into its buffer."""
        mlp = self.channel_mlp
        # the MLP runs on (B*H*W, C) rows
        hidden = mlp.norm(mlp.drop1(self._activate(mlp.act, mlp.fc1(
            self.channel_norm(x).flatten(0, 2)))))
        if (self._drop_path_active() or not fast_paths_enabled()
                or mlp.fc2.bias is None
                or not x.dtype == hidden.dtype == mlp.fc2.weight.dtype):
            return self._add_shortcut(mlp.drop2(mlp.fc2(hidden)).view(x.shape), x)
        # the output buffer starts as shortcut + fc2's bias and takes fc2's
        # product in place: no separate bias copy and residual pass
        rows = x.reshape(-1, x.shape[-1])
        if reuse_input and not records_grad(x):
            out = rows.add_(mlp.fc2.bias)
        else:
            out = torch.add(rows, mlp.fc2.bias)
        out.addmm_(hidden, mlp.fc2.weight.t())
        return mlp.drop2(out).view(x.shape)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mix(self.token_mix(x), reuse_input=True).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class SMLPStage(BaseModule):
    """A downsampling layer (stride-2, 2x2 conv; none in the first stage, whose
    input comes from the stem) followed by ``depth`` blocks."""

    def __init__(self, in_channels: int, channels: int, depth: int,
                 grid_size: Tuple[int, int], downsample: bool,
                 drop_path_rates: Sequence[float], block_cfg: dict,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        # pads bottom/right to even sizes, as Swin's patch embedding does
        self.downsample = PatchEmbed(
            in_channels, channels, kernel_size=2, stride=2, padding='corner',
            bias=False) if downsample else None
        self.blocks = ModuleList([
            SMLPBlock(channels, grid_size, drop_path_rate=dpr, **block_cfg)
            for dpr in drop_path_rates[:depth]
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = _tokens_to_map(*self.downsample(x))
        for block in self.blocks:
            x = block(x)
        return x


def _tokens_to_map(tokens: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """``(B, H*W, C)`` tokens from mmcv's PatchEmbed -> ``(B, C, H, W)`` map in
    channels-last memory (a view when the tokens are contiguous)."""
    b, _, c = tokens.shape
    return tokens.reshape(b, hw[0], hw[1], c).permute(0, 3, 1, 2).contiguous(
        memory_format=torch.channels_last)


@MODELS.register_module()
class SMLPNet(MLPBackboneMixin, BaseModule):
    """sMLPNet backbone (arXiv 2109.05422), pyramid of 4 stages (strides 4-32).

    A 4x4 stride-4 patch convolution, then four stages of sMLP blocks with C, 2C,
    4C, 8C channels; stages 2-4 start with a 2x2 stride-2 convolution. Each block
    mixes tokens locally (depthwise 3x3 conv) and globally (sMLP: one learned
    ``Linear(N, N)`` along the width and one along the height), then mixes channels
    with an MLP.

    The axial weights belong to the reference resolution ``img_size`` (token grids
    56/28/14/7 at 224) and are resized to the grid of every input (see
    :mod:`mmsmlp.models.utils.token_mixing`), so any input of at least 32x32 works;
    sides that are not multiples of 32 are padded bottom/right before each stride.

    Args:
        arch (str | dict): ``'tiny'`` (``'t'``), ``'tiny-a2'`` (``'t*'``, the
            paper's T*), ``'small'`` (``'s'``), ``'base'`` (``'b'``), or a dict with
            ``embed_dims`` (C), ``depths`` (blocks per stage) and optionally
            ``mlp_ratio`` (channel-MLP expansion, default 3). Defaults to 'tiny'.
        img_size (int | tuple): reference input size of the axial weights.
            Defaults to 224.
        in_channels (int): input channels. Defaults to 3.
        out_indices (int | Sequence[int]): stages whose outputs are returned, each
            through its own norm layer ``norm{i}``. Defaults to ``(0, 1, 2, 3)``.
        drop_path_rate (float): stochastic depth, growing linearly over all blocks
            from 0 to this value. Defaults to 0.
        norm_cfg (dict): norm of the token-mixing branch and of the outputs
            (``BN`` or ``SyncBN``). Defaults to ``dict(type='BN')``.
        channel_norm_cfg (dict): norm of the channel-mixing branch.
            Defaults to ``dict(type='LN')``.
        act_cfg (dict): activation. Defaults to ``dict(type='GELU')``.
        out_norm (bool | Sequence[int]): which outputs get their own norm layer
            ``norm{i}`` (built with ``norm_cfg``): True for every out index, False
            for none, or the stage indices that get one. ImageNet checkpoints
            hold only the last stage's norm (the paper's final BatchNorm), so
            ``out_norm=(3, )`` fine-tunes without new, untrained norms.
            Defaults to True.
        interpolate_mode (str): ``F.interpolate`` mode for resizing the axial
            weights. Defaults to ``'bilinear'``.
        resize_cache_size (int): resized axial weights cached per mixing at
            inference (bounded, cleared when the weights change). Defaults to 8.
        frozen_stages (int): -1 freezes nothing; k >= 0 freezes the stem, stages
            0..k and their output norms (mmpretrain's Swin semantics); they stay
            frozen after ``train()``. Defaults to -1.
        norm_eval (bool): keep BatchNorm layers in eval mode while training.
            Defaults to False.
        with_cp (bool): activation checkpointing per block. Defaults to False.
        local_mix (bool): the depthwise 3x3 conv of the token mixing; False is the
            paper's "global only" ablation (Table 1). Defaults to True.
        smlp_stages (Sequence[int], optional): stages whose blocks have sMLP;
            the others mix tokens with the depthwise conv only (Table 2).
            Defaults to all stages.
        fuse_mode (str): sMLP branch fusion, ``'concat'`` (concat + FC, the
            default), ``'sum'`` or ``'weighted_sum'`` (Table 3).
        branch_mode (str): ``'parallel'`` or ``'sequential'`` axial mixings
            (Table 4; sequential: the height mixing reads the width-mixed map).
        identity_branch (bool): keep the identity branch of sMLP (Table 4).
        pretrained (str, optional): deprecated (mmseg style), same as
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        init_cfg (dict | list, optional): e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    Shapes:
        input ``(B, in_channels, H, W)`` with H, W >= 32; output: a tuple with one
        ``(B, C * 2**i, ceil(H / 2**(i+2)), ceil(W / 2**(i+2)))`` tensor per out index.
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'],
                        dict(embed_dims=80, depths=[2, 8, 14, 2], mlp_ratio=3)),
        **dict.fromkeys(['t*', 'tiny-a2'],
                        dict(embed_dims=80, depths=[2, 8, 14, 2], mlp_ratio=2)),
        **dict.fromkeys(['s', 'small'],
                        dict(embed_dims=96, depths=[2, 10, 24, 2], mlp_ratio=3)),
        **dict.fromkeys(['b', 'base'],
                        dict(embed_dims=112, depths=[2, 10, 24, 2], mlp_ratio=3)),
    }
    patch_size = 4

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 channel_norm_cfg: dict = dict(type='LN'),
                 act_cfg: dict = dict(type='GELU'),
                 out_norm: Union[bool, Sequence[int]] = True,
                 interpolate_mode: str = 'bilinear',
                 resize_cache_size: int = 8,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 local_mix: bool = True,
                 smlp_stages: Optional[Sequence[int]] = None,
                 fuse_mode: str = 'concat',
                 branch_mode: str = 'parallel',
                 identity_branch: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg=[
                     dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                     dict(type='Constant', layer=['LayerNorm', '_BatchNorm'],
                          val=1., bias=0.),
                 ]):
        super().__init__(
            init_cfg=init_cfg_from_pretrained('SMLPNet', pretrained, init_cfg))
        settings = resolve_arch('SMLPNet', arch, self.arch_zoo,
                                required=('embed_dims', 'depths'),
                                optional=dict(mlp_ratio=3))
        self.embed_dims = int(settings['embed_dims'])
        self.depths = [int(d) for d in settings['depths']]
        self.mlp_ratio = settings['mlp_ratio']
        if self.embed_dims < 1 or not self.depths or min(self.depths) < 1:
            raise ValueError(f'SMLPNet: arch {settings} needs embed_dims >= 1 and '
                             'a non-empty list of depths >= 1')
        self.num_stages = len(self.depths)
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f'SMLPNet: drop_path_rate={drop_path_rate} must be '
                             'in [0, 1)')
        self.in_channels = in_channels
        self.img_size = to_2tuple(img_size)
        if min(self.img_size) < self.min_input_size:
            raise ValueError(f'SMLPNet: img_size={img_size} must be at least '
                             f'{self.min_input_size}')
        self.out_indices = resolve_indices('SMLPNet', out_indices, self.num_stages)
        self._check_frozen_stages(frozen_stages, self.num_stages)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        self.patch_embed = PatchEmbed(
            in_channels, self.embed_dims, kernel_size=self.patch_size,
            stride=self.patch_size, padding='corner', bias=False,
            input_size=self.img_size)
        grid = self.patch_embed.init_out_size  # (56, 56) at 224

        smlp_stages = range(self.num_stages) if smlp_stages is None else \
            resolve_indices('SMLPNet', list(smlp_stages), self.num_stages,
                            arg='smlp_stages') if len(smlp_stages) else ()
        if not local_mix and len(smlp_stages) < self.num_stages:
            raise ValueError(f'SMLPNet: local_mix=False with smlp_stages='
                             f'{tuple(smlp_stages)} leaves stages without token mixing')
        smlp_cfg = dict(fuse_mode=fuse_mode, branch_mode=branch_mode,
                        identity=identity_branch)

        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        block_cfg = dict(local_mix=local_mix, smlp_cfg=smlp_cfg,
            mlp_ratio=self.mlp_ratio, norm_cfg=norm_cfg,
            channel_norm_cfg=channel_norm_cfg, act_cfg=act_cfg,
            interpolate_mode=interpolate_mode, cache_size=resize_cache_size,
            with_cp=with_cp)
        self.stages = ModuleList()
        self.num_features = []
        in_ch = self.embed_dims
        for i, depth in enumerate(self.depths):
            channels = self.embed_dims * 2**i
            if i > 0:
                grid = tuple(math.ceil(g / 2) for g in grid)
            self.stages.append(
                SMLPStage(in_ch, channels, depth, grid, downsample=i > 0,
                          drop_path_rates=dpr,
                          block_cfg=dict(block_cfg, global_mix=i in smlp_stages)))
            dpr = dpr[depth:]
            self.num_features.append(channels)
            in_ch = channels

        if isinstance(out_norm, bool):
            normed = self.out_indices if out_norm else ()
        else:
            normed = resolve_indices('SMLPNet', out_norm, self.num_stages,
                                     arg='out_norm')
            if not set(normed) <= set(self.out_indices):
                raise ValueError(f'SMLPNet: out_norm={tuple(out_norm)} names stages '
                                 f'that are not in out_indices={self.out_indices}')
        for i in self.out_indices:
            norm = build_norm_layer(norm_cfg, self.num_features[i])[1] \
                if i in normed else nn.Identity()
            self.add_module(f'norm{i}', norm)

        # the feature maps are channels-last: convolution weights in the same
        # layout spare a reorder copy per call (loading and in-place
        # initialisation keep the layout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data = m.weight.data.contiguous(
                    memory_format=torch.channels_last)
        self._register_load_state_dict_pre_hook(self._check_checkpoint_shapes)
        self._freeze_stages()

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Checked input ``(B, in_channels, H, W)`` -> the patch-embedded map
        ``(B, C, ceil(H/4), ceil(W/4))`` (channels-last memory) that stage 0 reads."""
        self._check_input(x)
        return _tokens_to_map(*self.patch_embed(x))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.forward_stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.contiguous())
        return tuple(outs)

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            self._freeze(self.patch_embed)
        for i in range(self.frozen_stages + 1):
            self._freeze(self.stages[i])
            if i in self.out_indices:
                self._freeze(getattr(self, f'norm{i}'))

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer-wise depth of a parameter, for layer-wise lr decay.

        The stem is depth 0, block j of stage i is ``sum(depths[:i]) + j + 1``, a
        stage's downsampling conv shares the depth of the previous stage's last
        block, and the output norms and anything outside the backbone (the head)
        are the last depth.

        Returns:
            tuple[int, int]: the layer depth and the number of depths.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('patch_embed'):
            return 0, num_layers
        if name.startswith('stages.'):
            parts = name.split('.')
            stage_id = int(parts[1])
            if parts[2] == 'downsample':
                return sum(self.depths[:stage_id]), num_layers
            return sum(self.depths[:stage_id]) + int(parts[3]) + 1, num_layers
        return num_layers - 1, num_layers
