"""sMLPNet: "Sparse MLP for Image Recognition: Is Self-Attention Really Necessary?"
(Tang et al., AAAI 2022, arXiv 2109.05422), as a multi-scale backbone."""
import math
from functools import partial
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, ModuleList
from timm.layers import Mlp
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.registry import MODELS
from mmsmlp.utils.compat import register_load_state_dict_pre_hook
from ..utils.patch_embed import PatchEmbed
from ..utils.token_mixing import TokenMixing
from .base_backbone import (MLPBackboneMixin, check_bool, check_int_list,
                            check_mlp_ratio, check_norm_cfg, check_positive_int,
                            check_rate, check_size, init_cfg_from_pretrained,
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
        interpolate_mode (str): how the axial weights act on another grid.
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
                 fuse_mode: str = 'concat',
                 branch_mode: str = 'parallel',
                 identity: bool = True):
        super().__init__()
        if fuse_mode not in FUSE_MODES:
            raise ValueError(f'fuse_mode={fuse_mode!r}; accepted: {FUSE_MODES}')
        if branch_mode not in BRANCH_MODES:
            raise ValueError(f'branch_mode={branch_mode!r}; accepted: {BRANCH_MODES}')
        self.mix_height = TokenMixing(grid_size[0], interpolate_mode=interpolate_mode)
        self.mix_width = TokenMixing(grid_size[1], interpolate_mode=interpolate_mode)
        self.fuse_mode, self.branch_mode, self.identity = fuse_mode, branch_mode, identity
        self.num_branches = 3 if identity else 2
        if fuse_mode == 'concat':
            self.fuse = nn.Linear(self.num_branches * channels, channels, bias=False)
        elif fuse_mode == 'weighted_sum':
            self.fuse_weight = nn.Parameter(torch.ones(self.num_branches, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_w = self.mix_width(x, dim=2)
        x_h = self.mix_height(x_w if self.branch_mode == 'sequential' else x, dim=1)
        branches = (x, x_w, x_h) if self.identity else (x_w, x_h)
        if self.fuse_mode == 'concat':
            return self.fuse(torch.cat(branches, dim=-1))
        if self.fuse_mode == 'weighted_sum':
            # rows by index: torch.fx cannot iterate a traced parameter
            return sum(b * self.fuse_weight[i] for i, b in enumerate(branches))
        return sum(branches)


class SMLPBlock(BaseModule):
    """One sMLPNet block (the paper's Fig. 3): two residual branches that share
    one drop-path rate::

        x = x + drop_path(sMLP(act(BN(dwconv(act(BN(x)))))))   # token mixing
        x = x + drop_path(MLP(LN(x)))                           # channel mixing

    The token mixing is local (``BN -> act -> depthwise 3x3``) then global
    (``BN -> act -> sMLP``); either may be switched off (the paper's Tables 1 and
    2), ``smlp_cfg`` goes to :class:`SparseMLP`. The channel mixing is
    ``LN -> Linear(C, rC) -> act -> Linear(rC, C)``.

    :meth:`switch_to_deploy` folds the BatchNorm after the depthwise conv into it
    (inference only, as mmpretrain's RepVGG: the ``global_norm`` keys become a
    ``local_mix.bias``).

    Shapes:
        input and output ``(B, C, H, W)``, best in ``channels_last`` memory, where
        the ``(B, H, W, C)`` views that sMLP and the MLP read are free.
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
        self.deploy = False
        if local_mix:
            self.local_norm = build_norm_layer(norm_cfg, channels)[1]
            self.local_act = build_activation_layer(act_cfg)
            self.local_mix = nn.Conv2d(
                channels, channels, 3, padding=1, groups=channels, bias=False)
        if global_mix:
            self.global_norm = build_norm_layer(norm_cfg, channels)[1]
            self.global_act = build_activation_layer(act_cfg)
            self.sparse_mlp = SparseMLP(channels, grid_size, interpolate_mode,
                                        **smlp_cfg)
        self.channel_norm = build_norm_layer(channel_norm_cfg, channels)[1]
        self.channel_mlp = Mlp(
            channels,
            int(round(channels * mlp_ratio)),
            act_layer=partial(build_activation_layer, act_cfg))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 \
            else nn.Identity()

    def token_mix(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``: local, then global mixing."""
        if hasattr(self, 'local_mix'):
            x = self.local_mix(self.local_act(self.local_norm(x)))
        if hasattr(self, 'sparse_mlp'):
            x = self.global_act(self.global_norm(x)).permute(0, 2, 3, 1)
            x = self.sparse_mlp(x).permute(0, 3, 1, 2)
        return x

    def channel_mix(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``: the MLP over each token's channels."""
        x = self.channel_mlp(self.channel_norm(x.permute(0, 2, 3, 1)))
        return x.permute(0, 3, 1, 2)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.token_mix(x))
        return x + self.drop_path(self.channel_mix(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def switch_to_deploy(self):
        """Fold ``global_norm`` (an eval-mode BatchNorm, an affine map per channel)
        into the depthwise conv before it: one pass less per block at inference.
        Irreversible: call it on a trained model for inference or export."""
        if self.deploy:
            return
        self.deploy = True
        bn = getattr(self, 'global_norm', None)
        if not (hasattr(self, 'local_mix') and isinstance(bn, _BatchNorm)
                and bn.track_running_stats and bn.affine):
            return
        conv = self.local_mix
        with torch.no_grad():
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                              padding=conv.padding, groups=conv.groups, bias=True)
            fused.to(conv.weight)
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.local_mix = fused
        self.global_norm = nn.Identity()


class SMLPStage(BaseModule):
    """A downsampling layer (stride-2, 2x2 conv; none in the first stage, whose
    input comes from the stem) followed by ``depth`` blocks."""

    def __init__(self, in_channels: int, channels: int, depth: int,
                 grid_size: Tuple[int, int], downsample: bool,
                 drop_path_rates: Sequence[float], block_cfg: dict,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.downsample = PatchEmbed(in_channels, channels, 2, bias=False) \
            if downsample else None
        self.blocks = ModuleList([
            SMLPBlock(channels, grid_size, drop_path_rate=dpr, **block_cfg)
            for dpr in drop_path_rates[:depth]
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return x


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
        interpolate_mode (str): ``F.interpolate`` mode of the resampling that
            applies the axial weights to another grid. Defaults to ``'bilinear'``.
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
        name = 'SMLPNet'
        self.embed_dims = check_positive_int(name, 'embed_dims', settings['embed_dims'])
        self.depths = check_int_list(name, 'depths', settings['depths'])
        self.mlp_ratio = check_mlp_ratio(name, settings['mlp_ratio'], self.embed_dims)
        self.num_stages = len(self.depths)
        check_rate(name, 'drop_path_rate', drop_path_rate)
        self.in_channels = check_positive_int(name, 'in_channels', in_channels)
        self.img_size = check_size(name, 'img_size', img_size, self.min_input_size)
        self.out_indices = resolve_indices(name, out_indices, self.num_stages)
        self._check_frozen_stages(frozen_stages, self.num_stages)
        self.frozen_stages = frozen_stages
        self.norm_eval = check_bool(name, 'norm_eval', norm_eval)
        for arg, value in (('with_cp', with_cp), ('local_mix', local_mix),
                           ('identity_branch', identity_branch)):
            check_bool(name, arg, value)
        check_norm_cfg(
            name, 'norm_cfg', norm_cfg, self.embed_dims,
            (nn.BatchNorm2d, nn.SyncBatchNorm),
            "accepted: dict(type='BN') or dict(type='SyncBN') (a BatchNorm2d or "
            "SyncBatchNorm): sMLPNet's token-mixing and output norms are "
            'BatchNorms, whose running statistics ImageNet checkpoints hold, '
            'which norm_eval and frozen_stages keep in eval mode and which '
            'switch_to_deploy folds into the depthwise conv')
        check_norm_cfg(
            name, 'channel_norm_cfg', channel_norm_cfg, self.embed_dims,
            (nn.LayerNorm, ), "accepted: dict(type='LN') (an nn.LayerNorm): the "
            'channel MLP normalises the channels of each token of a (B, H, W, C) '
            'map, its last dimension', exact=True)

        self.patch_embed = PatchEmbed(in_channels, self.embed_dims, self.patch_size,
                                      bias=False)
        grid = tuple(math.ceil(s / self.patch_size) for s in self.img_size)  # 56, 56

        if smlp_stages is None:
            smlp_stages = range(self.num_stages)
        elif not (isinstance(smlp_stages, (list, tuple)) and len(smlp_stages) == 0):
            smlp_stages = resolve_indices(name, smlp_stages, self.num_stages,
                                          arg='smlp_stages')
        if not local_mix and len(smlp_stages) < self.num_stages:
            raise ValueError(f'SMLPNet: local_mix=False with smlp_stages='
                             f'{tuple(smlp_stages)} leaves stages without token mixing')
        smlp_cfg = dict(fuse_mode=fuse_mode, branch_mode=branch_mode,
                        identity=identity_branch)

        # on the CPU: a default-device context (timm's device='meta') has no values
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths), device='cpu').tolist()
        block_cfg = dict(local_mix=local_mix, smlp_cfg=smlp_cfg,
            mlp_ratio=self.mlp_ratio, norm_cfg=norm_cfg,
            channel_norm_cfg=channel_norm_cfg, act_cfg=act_cfg,
            interpolate_mode=interpolate_mode,
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
                raise ValueError(f'SMLPNet: out_norm={out_norm!r} names stages '
                                 f'that are not in out_indices={self.out_indices}')
        for i in self.out_indices:
            norm = build_norm_layer(norm_cfg, self.num_features[i])[1] \
                if i in normed else nn.Identity()
            self.add_module(f'norm{i}', norm)

        register_load_state_dict_pre_hook(self, self._check_checkpoint_shapes)
        self._freeze_stages()

    def _norm_groups(self):
        """Stage ``i`` and its output norm run on a stride ``4 * 2**i`` map."""
        for i, stage in enumerate(self.stages):
            yield (self.patch_size * 2**i, f'stage {i}',
                   (stage, getattr(self, f'norm{i}', None)))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Checked input ``(B, in_channels, H, W)`` -> the patch-embedded map
        ``(B, C, ceil(H/4), ceil(W/4))`` (channels-last memory) that stage 0 reads."""
        self._check_input(x)
        # the blocks' (B, H, W, C) views are free in channels-last memory
        return self.patch_embed(x).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.forward_stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.contiguous())
        return tuple(outs)

    def switch_to_deploy(self):
        """Re-parameterise every block for inference (see
        :meth:`SMLPBlock.switch_to_deploy`); outputs stay equal to eval mode."""
        for m in self.modules():
            if isinstance(m, SMLPBlock):
                m.switch_to_deploy()

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
