"""What the mmsmlp backbones share: argument checks, input checks, the switches
(``frozen_stages``, ``norm_eval``) and a strict shape check on checkpoint loading."""
import os.path as osp
import warnings
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.fx
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.utils.compat import is_compiling
from ..utils.token_mixing import TokenMixing


def resolve_arch(name: str, arch: Union[str, dict], arch_zoo: Dict[str, dict],
                 required: Sequence[str], optional: Dict[str, object]) -> dict:
    """Return the settings of a preset name or check a custom arch dict.

    ``required`` keys must be in a custom dict; ``optional`` maps the other accepted
    keys to their defaults. Unknown keys are an error, not silently ignored.
    """
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_zoo:
            raise ValueError(f'{name}: arch={arch!r} is not a preset; choose one of '
                             f'{sorted(set(arch_zoo))} or pass a dict with keys '
                             f'{list(required) + list(optional)}')
        return {**optional, **arch_zoo[key]}
    if not isinstance(arch, dict):
        raise TypeError(f'{name}: arch must be a preset name (str) or a dict, '
                        f'got {type(arch).__name__}')
    missing = [k for k in required if k not in arch]
    unknown = [k for k in arch if k not in required and k not in optional]
    if missing or unknown:
        raise ValueError(f'{name}: custom arch {arch} has missing keys {missing} and '
                         f'unknown keys {unknown}; required: {list(required)}, '
                         f'optional: {list(optional)}')
    return {**optional, **arch}


def resolve_indices(name: str, indices: Union[int, Sequence[int]], num: int,
                    arg: str = 'out_indices') -> Tuple[int, ...]:
    """Normalise stage indices (negative ones count from the end)."""
    if isinstance(indices, int):
        indices = [indices]
    if not isinstance(indices, Sequence) or len(indices) == 0:
        raise TypeError(f'{name}: {arg} must be an int or a non-empty '
                        f'sequence of ints, got {indices!r}')
    out = []
    for i in indices:
        if not isinstance(i, int) or not -num <= i < num:
            raise ValueError(f'{name}: {arg}={tuple(indices)} contains {i!r}; '
                             f'accepted: integers in [{-num}, {num - 1}]')
        out.append(i % num)
    return tuple(sorted(set(out)))


def init_cfg_from_pretrained(name: str, pretrained: Optional[str], init_cfg):
    """Accept mmseg's deprecated ``pretrained=`` argument as an ``init_cfg``.

    mmseg's base model configs set ``model.pretrained`` to ResNet weights
    (``open-mmlab://...``); those can never initialise this backbone, so they are
    refused with the fix instead of failing later in a download.
    """
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise TypeError(f'{name}: pretrained must be a checkpoint path (str) or '
                        f'None, got {type(pretrained).__name__}')
    if pretrained.startswith(('open-mmlab://', 'torchvision://', 'mmcls://')):
        raise ValueError(
            f'{name}: pretrained={pretrained!r} names weights of another model '
            f'(inherited from a base config?). Set model.pretrained=None and load '
            f'{name} weights with backbone.init_cfg=dict(type=\'Pretrained\', '
            f'checkpoint=..., prefix=\'backbone.\')')
    warnings.warn(f'{name}: pretrained is deprecated, use init_cfg=dict('
                  f'type=\'Pretrained\', checkpoint=...) instead')
    return dict(type='Pretrained', checkpoint=pretrained)


@torch.fx.wrap
def check_input(x: torch.Tensor, name: str, in_channels: int, min_size: int):
    """Refuse an input the backbone cannot process, naming the problem (a leaf
    for ``torch.fx``: it runs when the traced graph runs)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'{name}: input must be a torch.Tensor, '
                        f'got {type(x).__name__}')
    if x.dim() != 4:
        raise ValueError(f'{name}: input must be 4-D (N, C, H, W), got shape '
                         f'{tuple(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(f'{name}: input must be a floating-point tensor, got '
                        f'{x.dtype}')
    if x.shape[1] != in_channels:
        raise ValueError(f'{name}: input has {x.shape[1]} channels (shape '
                         f'{tuple(x.shape)}) but in_channels={in_channels}')
    h, w = x.shape[2], x.shape[3]
    if h < min_size or w < min_size:
        raise ValueError(f'{name}: input spatial size {h}x{w} is too small; '
                         f'height and width must be at least {min_size}')
    # one sum (finite for finite inputs unless it overflows, when the exact
    # element-wise test decides); not while compiling or exporting, where a
    # data-dependent branch has no place
    if (not is_compiling() and not torch.jit.is_tracing()
            and not torch.isfinite(x.sum()) and not torch.isfinite(x).all()):
        raise ValueError(f'{name}: input of shape {tuple(x.shape)} contains NaN '
                         'or Inf values')


class MLPBackboneMixin:
    """Mixed into the ``BaseModule`` backbones of mmsmlp.

    Subclasses set ``self.in_channels``, ``self.frozen_stages``, ``self.norm_eval``
    and implement ``_freeze_stages``.
    """

    min_input_size = 32

    def _check_input(self, x: torch.Tensor):
        check_input(x, type(self).__name__, self.in_channels, self.min_input_size)

    def _check_frozen_stages(self, frozen_stages: int, num_stages: int):
        if not isinstance(frozen_stages, int) or \
                not -1 <= frozen_stages < num_stages:
            raise ValueError(f'{type(self).__name__}: frozen_stages={frozen_stages!r} '
                             f'is out of range; accepted: -1 (none) to '
                             f'{num_stages - 1}')

    def init_weights(self):
        """Check a ``Pretrained`` checkpoint before mmengine opens it, and turn a
        file that cannot be loaded into an error naming it."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        local = []
        for cfg in cfgs:
            if not isinstance(cfg, dict) or cfg.get('type') != 'Pretrained':
                continue
            ckpt = cfg.get('checkpoint')
            if not isinstance(ckpt, str) or not ckpt:
                raise ValueError(f'{type(self).__name__}: init_cfg {cfg} needs a '
                                 'checkpoint path')
            if '://' not in ckpt:
                if not osp.isfile(ckpt):
                    raise FileNotFoundError(
                        f'{type(self).__name__}: init_cfg checkpoint {ckpt!r} does '
                        f'not exist (from init_cfg={cfg}); set it to your '
                        'pretrained file, or to None to train from scratch')
                local.append(ckpt)
        try:
            super().init_weights()
        except Exception as err:
            # empty, truncated or unsafe files fail deep inside torch.load: say
            # which file and why (read_checkpoint raises the clear error)
            from mmsmlp.utils import read_checkpoint
            for ckpt in local:
                read_checkpoint(ckpt)
            raise err

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    @staticmethod
    def _freeze(*modules):
        for m in modules:
            if m is None:
                continue
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def _check_checkpoint_shapes(self, state_dict, prefix, *args, **kwargs):
        """Refuse a checkpoint whose tensors cannot fill this model.

        Registered as a load-state-dict pre-hook: mmengine loads with
        ``strict=False`` and would only warn about a size mismatch, leaving random
        weights behind. Token-mixing weights are skipped here: their own pre-hook
        resizes them (or explains why it cannot).
        """
        mixing = tuple(n + '.' for n, m in self.named_modules()
                       if isinstance(m, TokenMixing))
        own = self.state_dict()
        if not any(prefix + name in state_dict for name in own):
            raise ValueError(
                f'the checkpoint has none of the keys of {type(self).__name__} '
                f'under the prefix {prefix!r} (its first keys: '
                f'{list(state_dict)[:4]}): a checkpoint of another model, or a wrong '
                "init_cfg prefix (a classifier's backbone is 'backbone.')")
        missing = [n for n in own if prefix + n not in state_dict]
        from mmengine.logging import print_log
        print_log(f'{type(self).__name__}: the checkpoint provides '
                  f'{len(own) - len(missing)} of the {len(own)} backbone tensors '
                  f'(prefix {prefix!r}); missing: {missing[:8] or "none"}'
                  + (f' and {len(missing) - 8} more' if len(missing) > 8 else ''),
                  logger='current')
        for name, tensor in own.items():
            key = prefix + name
            if key not in state_dict or name.startswith(mixing):
                continue
            got = state_dict[key]
            if hasattr(got, 'shape') and tuple(got.shape) != tuple(tensor.shape):
                raise ValueError(
                    f'checkpoint key {key!r} has shape {tuple(got.shape)} but the '
                    f'model expects {tuple(tensor.shape)}: the checkpoint is of '
                    f'another architecture ({type(self).__name__} here)')
