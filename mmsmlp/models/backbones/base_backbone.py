"""What the mmsmlp backbones share: argument checks, input checks, the switches
(``frozen_stages``, ``norm_eval``) and a strict shape check on checkpoint loading.

The argument checks (``check_*``, :func:`resolve_arch`, :func:`resolve_indices`)
refuse what Python would otherwise coerce silently: a bool is an int
(``out_indices=True`` would mean stage 1), a string is a sequence
(``depths='1111'`` would be four characters), ``int(16.9)`` is 16.
"""
import math
import numbers
import os.path as osp
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.fx
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.utils.compat import is_autocast_enabled, is_compiling
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


def _is_int(value) -> bool:
    """An integer that is not a bool (``True`` is an int in Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_list(value) -> bool:
    """A list / tuple-like sequence that is not a string (a string is a sequence
    of characters)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _got(value) -> str:
    if _is_list(value):
        return f'a {type(value).__name__} of length {len(value)}'
    return type(value).__name__


def resolve_indices(name: str, indices: Union[int, Sequence[int]], num: int,
                    arg: str = 'out_indices') -> Tuple[int, ...]:
    """Normalise stage indices, an int or a non-empty list / tuple of ints
    (negative ones count from the end), to sorted non-negative ones."""
    accepted = (f'an int or a non-empty list / tuple of ints in [{-num}, '
                f'{num - 1}]')
    if _is_int(indices):
        indices = [indices]
    elif not _is_list(indices):
        raise TypeError(f'{name}: {arg}={indices!r} is not accepted (got '
                        f'{_got(indices)}); accepted: {accepted}')
    if len(indices) == 0:
        raise ValueError(f'{name}: {arg}={indices!r} is empty; accepted: {accepted}')
    out = []
    for i in indices:
        if not _is_int(i):
            raise TypeError(f'{name}: {arg}={tuple(indices)} contains {i!r} (a '
                            f'{type(i).__name__}); accepted: {accepted}')
        if not -num <= i < num:
            raise ValueError(f'{name}: {arg}={tuple(indices)} contains {i!r}; '
                             f'accepted: integers in [{-num}, {num - 1}]')
        out.append(int(i) % num)
    return tuple(sorted(set(out)))


def check_positive_int(name: str, arg: str, value) -> int:
    """``value`` as an int >= 1: bools and floats (``16.9``) are refused, not
    truncated."""
    if not _is_int(value):
        raise TypeError(f'{name}: {arg}={value!r} must be a positive int, got '
                        f'{_got(value)}')
    if value < 1:
        raise ValueError(f'{name}: {arg}={value!r} must be a positive int')
    return int(value)


def check_int_list(name: str, arg: str, value) -> List[int]:
    """``value`` as a list of ints >= 1, from a non-empty list / tuple (not a
    string, whose characters would pass for numbers)."""
    accepted = 'a non-empty list / tuple of positive ints'
    if not _is_list(value):
        raise TypeError(f'{name}: {arg}={value!r} must be {accepted}, got '
                        f'{_got(value)}')
    if len(value) == 0:
        raise ValueError(f'{name}: {arg}={value!r} is empty; accepted: {accepted}')
    for v in value:
        if not _is_int(v):
            raise TypeError(f'{name}: {arg}={value!r} contains {v!r} (a '
                            f'{type(v).__name__}); accepted: {accepted}')
        if v < 1:
            raise ValueError(f'{name}: {arg}={value!r} contains {v!r}; accepted: '
                             f'{accepted}')
    return [int(v) for v in value]


def check_positive_number(name: str, arg: str, value) -> Union[int, float]:
    """``value`` unchanged if it is a finite number > 0 (an int or a float, not a
    bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name}: {arg}={value!r} must be a positive number (int '
                        f'or float), got {_got(value)}')
    if not 0 < value < math.inf:  # NaN fails too
        raise ValueError(f'{name}: {arg}={value!r} must be a positive, finite '
                         'number')
    return value


def check_rate(name: str, arg: str, value) -> float:
    """``value`` as a float in [0, 1) (a probability such as a drop-path rate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name}: {arg}={value!r} must be a number in [0, 1), got '
                        f'{_got(value)}')
    if not 0 <= value < 1:
        raise ValueError(f'{name}: {arg}={value} must be in [0, 1)')
    return float(value)


def check_mlp_ratio(name: str, mlp_ratio, embed_dims: int) -> Union[int, float]:
    """A positive ``mlp_ratio`` that gives the channel MLP of ``embed_dims``
    channels at least one hidden channel."""
    check_positive_number(name, 'mlp_ratio', mlp_ratio)
    if embed_dims * mlp_ratio < 1:
        raise ValueError(f'{name}: mlp_ratio={mlp_ratio!r} leaves the channel MLP '
                         f'no hidden channel (embed_dims={embed_dims} x '
                         f'{mlp_ratio} < 1); accepted: mlp_ratio >= '
                         f'{1 / embed_dims:.3g}')
    return mlp_ratio


def check_size(name: str, arg: str, value, minimum: int) -> Tuple[int, int]:
    """``value``, an int or a ``(height, width)`` pair of ints, each at least
    ``minimum``, as a ``(height, width)`` tuple."""
    pair = (value, value) if _is_int(value) else value
    if not (_is_list(pair) and len(pair) == 2 and all(_is_int(v) for v in pair)):
        raise TypeError(f'{name}: {arg}={value!r} must be an int or a (height, '
                        f'width) pair of ints, got {_got(value)}')
    if min(pair) < minimum:
        raise ValueError(f'{name}: {arg}={value} must be at least {minimum}')
    return int(pair[0]), int(pair[1])


def check_bool(name: str, arg: str, value) -> bool:
    """``value`` if it is True or False (a string such as ``'False'`` is true)."""
    if not isinstance(value, bool):
        raise TypeError(f'{name}: {arg}={value!r} must be True or False, got '
                        f'{_got(value)}')
    return value


def check_norm_cfg(name: str, arg: str, cfg, channels: int,
                   kinds: Tuple[type, ...], accepted: str, exact: bool = False,
                   build: Optional[Callable[[dict, int], nn.Module]] = None):
    """Refuse a norm config whose layer this backbone cannot use.

    The layer is built once for ``channels`` (by ``build``, default mmcv's
    ``build_norm_layer``) and must be an instance of ``kinds`` (of exactly one of
    them with ``exact``: a LayerNorm subclass may normalise another dimension).
    ``accepted`` says what is accepted and why.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'{name}: {arg}={cfg!r} must be a dict with a \'type\' '
                        f'key; {accepted}')
    try:
        layer = build(cfg, channels) if build is not None else \
            build_norm_layer(cfg, channels)[1]
    except Exception as err:  # unknown type, missing or wrong arguments
        detail = f'{type(err).__name__}: {err}' if str(err) else type(err).__name__
        raise ValueError(f'{name}: {arg}={cfg!r} is not accepted (building it '
                         f'failed: {detail}); {accepted}') from err
    ok = type(layer) in kinds if exact else isinstance(layer, kinds)
    if not ok:
        raise ValueError(f'{name}: {arg}={cfg!r} (a {type(layer).__name__}) is not '
                         f'accepted; {accepted}')


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


def uses_batch_statistics(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm that normalises with the statistics of
    the batch it sees on this process (training mode, or no running statistics);
    a SyncBatchNorm over several processes pools the batches of all of them."""
    if not isinstance(module, _BatchNorm) or not (
            module.training or module.running_mean is None):
        return False
    if isinstance(module, nn.SyncBatchNorm) and dist.is_available() \
            and dist.is_initialized():
        return dist.get_world_size(module.process_group) < 2
    return True


@torch.fx.wrap
def check_input(x: torch.Tensor, name: str, in_channels: int, min_size: int,
                weight_dtype: Optional[torch.dtype] = None,
                batch_stat_norms: Sequence[Tuple[int, str]] = ()):
    """Refuse an input the backbone cannot process, naming the problem (a leaf
    for ``torch.fx``: it runs when the traced graph runs).

    Args:
        x: the input, ``(N, in_channels, H, W)`` with ``N >= 1`` and
            ``H, W >= min_size``, finite.
        weight_dtype: dtype of the weights that read ``x``; an input of another
            dtype is refused unless ``torch.autocast`` is on for its device.
        batch_stat_norms: ``(stride, where)`` of the BatchNorm layers that
            normalise with batch statistics (see :func:`uses_batch_statistics`)
            on a ``ceil(H / stride) x ceil(W / stride)`` map; a batch of one
            image that leaves them one value per channel is refused.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'{name}: input must be a torch.Tensor, '
                        f'got {type(x).__name__}')
    if x.dim() != 4:
        raise ValueError(f'{name}: input must be 4-D (N, C, H, W), got shape '
                         f'{tuple(x.shape)}')
    if x.shape[0] == 0:
        raise ValueError(f'{name}: input has a batch of 0 images (shape '
                         f'{tuple(x.shape)}); a batch needs at least one (its '
                         'outputs would be empty, and a mean over them NaN)')
    if not x.is_floating_point():
        raise TypeError(f'{name}: input must be a floating-point tensor, got '
                        f'{x.dtype}')
    device = x.device.type
    if weight_dtype is not None and x.dtype != weight_dtype \
            and not is_autocast_enabled(device):
        hint = (f'; for mixed precision keep the model in {weight_dtype} and run '
                f'it under torch.autocast({device!r}, dtype={x.dtype})'
                if x.dtype in (torch.float16, torch.bfloat16) else '')
        raise TypeError(f'{name}: input dtype {x.dtype} does not match the '
                        f'model\'s weights ({weight_dtype}); convert the input '
                        f'(x.to({weight_dtype})) or the model (model.to('
                        f'{x.dtype})){hint}')
    if x.shape[1] != in_channels:
        raise ValueError(f'{name}: input has {x.shape[1]} channels (shape '
                         f'{tuple(x.shape)}) but in_channels={in_channels}')
    h, w = x.shape[2], x.shape[3]
    if h < min_size or w < min_size:
        raise ValueError(f'{name}: input spatial size {h}x{w} is too small; '
                         f'height and width must be at least {min_size}')
    if x.shape[0] == 1:
        for stride, where in batch_stat_norms:
            if h <= stride and w <= stride:  # a 1x1 map
                raise ValueError(
                    f'{name}: a batch of 1 image of {h}x{w} leaves one value per '
                    f'channel (a 1x1 map at stride {stride}) for the BatchNorm '
                    f'layers of {where}, which cannot normalise it in training '
                    'mode; use a batch of at least 2 images, an input with a side '
                    f'larger than {stride}, or keep the BatchNorm layers in eval '
                    'mode (norm_eval=True, or model.eval())')
    # one sum (finite for finite inputs unless it overflows, when the exact
    # element-wise test decides); not while compiling or exporting, where a
    # data-dependent branch has no place, nor on the meta device (no values)
    if (not is_compiling() and not torch.jit.is_tracing() and x.device.type != 'meta'
            and not torch.isfinite(x.sum()) and not torch.isfinite(x).all()):
        raise ValueError(f'{name}: input of shape {tuple(x.shape)} contains NaN '
                         'or Inf values')


class MLPBackboneMixin:
    """Mixed into the ``BaseModule`` backbones of mmsmlp.

    Subclasses set ``self.in_channels``, ``self.frozen_stages``, ``self.norm_eval``
    and ``self.patch_embed`` (a :class:`~mmsmlp.models.utils.PatchEmbed`, which
    reads the input), implement ``_freeze_stages`` and may implement
    ``_norm_groups``.
    """

    min_input_size = 32

    def _norm_groups(self) -> Iterable[Tuple[int, str, Sequence[nn.Module]]]:
        """``(stride, where, modules)``: the norm layers inside ``modules`` see a
        ``ceil(H / stride) x ceil(W / stride)`` map of an ``H x W`` input (only
        groups whose map can be 1x1 matter). None by default."""
        return ()

    def _check_input(self, x: torch.Tensor):
        norms = ()
        # the norms that this batch of one image leaves with one value per
        # channel (a 1x1 map); looked up in eager mode only (under torch.fx ``x``
        # is a Proxy, under torch.compile torch's own check remains), and their
        # modules walked only for the groups whose map is 1x1 (batch-1 inference
        # at usual sizes walks none)
        if (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[0] == 1
                and not is_compiling() and not torch.jit.is_tracing()):
            h, w = x.shape[2], x.shape[3]
            norms = tuple(
                (stride, where) for stride, where, modules in self._norm_groups()
                if h <= stride and w <= stride
                and any(uses_batch_statistics(m) for group in modules
                        if group is not None for m in group.modules()))
        check_input(x, type(self).__name__, self.in_channels, self.min_input_size,
                    self.patch_embed.projection.weight.dtype, norms)

    def _check_frozen_stages(self, frozen_stages: int, num_stages: int):
        if not _is_int(frozen_stages):
            raise TypeError(f'{type(self).__name__}: frozen_stages={frozen_stages!r} '
                            f'must be an int in [-1, {num_stages - 1}], got '
                            f'{_got(frozen_stages)}')
        if not -1 <= frozen_stages < num_stages:
            raise ValueError(f'{type(self).__name__}: frozen_stages={frozen_stages!r} '
                             f'is out of range; accepted: -1 (none) to '
                             f'{num_stages - 1}')

    def init_weights(self):
        """Check a ``Pretrained`` checkpoint before mmengine opens it, and turn a
        file that cannot be loaded, or a ``prefix`` that matches none of its keys,
        into an error naming it. ``prefix=''`` means no prefix (the checkpoint's
        keys as they are), as ``prefix=None`` does."""
        name = type(self).__name__
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        checked, local = [], []
        for cfg in cfgs:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
                cfg = self._check_pretrained_cfg(cfg)
                if '://' not in cfg['checkpoint']:
                    local.append((cfg['checkpoint'], cfg.get('prefix')))
            checked.append(cfg)
        if isinstance(self.init_cfg, (dict, list)):
            self.init_cfg = checked if isinstance(self.init_cfg, list) else checked[0]
        try:
            super().init_weights()
        except Exception as err:
            # empty, truncated or unsafe files fail deep inside torch.load: say
            # which file and why (read_checkpoint raises the clear error)
            from mmsmlp.utils import read_checkpoint
            for ckpt, prefix in local:
                loaded = read_checkpoint(ckpt)
                if not prefix or not isinstance(loaded, dict):
                    continue
                state = loaded.get('state_dict', loaded)
                # mmengine reads the keys under ``prefix`` + '.'
                full = prefix if prefix.endswith('.') else prefix + '.'
                if isinstance(state, dict) and not any(
                        str(k).startswith(full) for k in state):
                    raise ValueError(
                        f'{name}: init_cfg prefix {prefix!r} matches no key of '
                        f'checkpoint {ckpt!r} (its first keys: {list(state)[:4]}); '
                        'set the prefix of the backbone keys in it (\'backbone.\' '
                        'for a classifier or detector checkpoint), or no prefix '
                        '(None or \'\') for a checkpoint of the backbone alone'
                    ) from err
            raise err

    def _check_pretrained_cfg(self, cfg: dict) -> dict:
        """A checked copy of one ``Pretrained`` init_cfg."""
        name = type(self).__name__
        ckpt = cfg.get('checkpoint')
        if not isinstance(ckpt, str) or not ckpt:
            raise ValueError(f'{name}: init_cfg {cfg} needs a checkpoint path')
        prefix = cfg.get('prefix')
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f'{name}: init_cfg prefix={prefix!r} must be a str '
                            f'(e.g. \'backbone.\') or None, got {_got(prefix)}')
        if '://' not in ckpt and not osp.isfile(ckpt):
            raise FileNotFoundError(
                f'{name}: init_cfg checkpoint {ckpt!r} does not exist (from '
                f'init_cfg={cfg}); set it to your pretrained file, or to None to '
                'train from scratch')
        cfg = dict(cfg)
        if prefix == '':
            # mmengine's PretrainedInit appends '.' to a prefix, so '' would match
            # no key and fail an assertion; no prefix loads the keys as they are
            cfg.pop('prefix')
        return cfg

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
        """Refuse a checkpoint whose tensors cannot fill this model, or whose
        tensors for it hold NaN or infinite values (all such keys named).

        Registered as a load-state-dict pre-hook: mmengine loads with
        ``strict=False`` and would only warn about a size mismatch, leaving random
        weights behind. Token-mixing weights are skipped by the shape check: their
        own pre-hook resizes them (or explains why it cannot).
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
        # NaN / Inf weights (a diverged run, a corrupt file) would load silently
        from mmsmlp.utils.checkpoint import check_finite
        check_finite(state_dict, f'the checkpoint loaded into {type(self).__name__}',
                     keys=[prefix + name for name in own])
