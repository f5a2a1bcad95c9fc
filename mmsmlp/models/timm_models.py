"""sMLPNet classifiers as timm models.

Importing this module registers four timm model names (nothing is downloaded,
ever: no weights are published for sMLPNet, so the pretrained configs hold no URL
and no Hugging Face Hub id)::

    smlpnet_tiny_a2   sMLPNet-T*  (C=80,  depths 2-8-14-2,  MLP ratio 2)  19.18 M
    smlpnet_tiny      sMLPNet-T   (C=80,  depths 2-8-14-2,  MLP ratio 3)  24.12 M
    smlpnet_small     sMLPNet-S   (C=96,  depths 2-10-24-2, MLP ratio 3)  48.56 M
    smlpnet_base      sMLPNet-B   (C=112, depths 2-10-24-2, MLP ratio 3)  65.88 M

Example::

    import timm
    import mmsmlp.models.timm_models  # noqa: F401  (registers the names)

    model = timm.create_model('smlpnet_tiny', num_classes=10)
    # weights of an mmpretrain ImageClassifier (configs/smlpnet/*_in1k.py):
    model = timm.create_model('smlpnet_tiny',
                              checkpoint_path='checkpoints/smlpnet-t_in1k.pth')
    # pyramid features (strides 4, 8, 16, 32) for dense prediction:
    feats = timm.create_model('smlpnet_tiny', features_only=True, out_indices=(1, 2, 3))

The network is :class:`~mmsmlp.models.backbones.SMLPNet` itself (no second
implementation): :class:`SMLPNetTimm` owns one as ``backbone`` (with
``out_indices=(3, )``, so that its ``norm3`` is the paper's final BatchNorm) and a
timm ``ClassifierHead`` as ``head`` (average pooling, dropout, ``head.fc``).

Checkpoints are interchangeable with mmpretrain's ``ImageClassifier`` (``SMLPNet``
backbone with ``out_indices=(3, )``, ``GlobalAveragePooling`` neck,
``LinearClsHead``): both state dicts hold exactly the keys ``backbone.*`` and
``head.fc.{weight,bias}``. An mmpretrain checkpoint therefore loads with timm's
``checkpoint_path=`` (strict) or ``pretrained=True,
pretrained_cfg_overlay=dict(file=PATH)`` (through :func:`checkpoint_filter_fn`,
which also adapts the number of classes), and ``model.state_dict()`` of a timm model
loads into the mmpretrain classifier as it is. Official SPACH checkpoints
(``smlp_s.pth``, ``smlp_b.pth``) are converted first with
``tools/model_converters/smlp2mmsmlp.py``. Axial token-mixing weights of another
resolution are resized on load (``img_size=384`` from a 224 checkpoint).
"""
from collections import OrderedDict
from contextlib import nullcontext
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import initialize
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, trunc_normal_
from timm.models import (build_model_with_cfg, generate_default_cfgs,
                         register_model, resolve_pretrained_cfg)

from .backbones.smlpnet import SMLPBlock, SMLPNet

__all__ = ['SMLPNetTimm', 'checkpoint_filter_fn', 'NoPretrainedWeightsError',
           'TIMM_ARCHS']

#: timm model name -> ``SMLPNet`` arch preset.
TIMM_ARCHS = OrderedDict(
    smlpnet_tiny_a2='tiny-a2',
    smlpnet_tiny='tiny',
    smlpnet_small='small',
    smlpnet_base='base',
)

# keys of the official SPACH layout (see tools/model_converters/smlp2mmsmlp.py)
_OFFICIAL_PREFIXES = ('to_patch_embedding.', 'token_mix.', 'channel_mix.',
                      'batch_norm.', 'mlp_head.')
_CONVERTER = 'tools/model_converters/smlp2mmsmlp.py'


class NoPretrainedWeightsError(RuntimeError):
    """``pretrained=True`` without a local weight file: none are published."""


class SMLPNetTimm(nn.Module):
    """sMLPNet classifier with timm's model interface.

    ``backbone`` (an :class:`SMLPNet`, final BatchNorm ``backbone.norm3``) ->
    ``head`` (timm ``ClassifierHead``: global pooling, dropout, ``head.fc``).

    Args:
        arch (str | dict): ``SMLPNet`` arch preset (``'tiny-a2'``, ``'tiny'``,
            ``'small'``, ``'base'``) or dict. Defaults to ``'tiny'``.
        img_size (int | tuple): reference resolution of the axial mixing weights
            (any input of at least 32x32 works). Defaults to 224.
        in_chans (int): input channels. Defaults to 3.
        num_classes (int): classes; 0 gives no classifier (``head.fc`` is an
            ``Identity``). Defaults to 1000.
        global_pool (str): timm pooling type (``'avg'``, ``'max'``, ``'avgmax'``,
            ``''`` for none). Defaults to ``'avg'`` (the paper's).
        drop_rate (float): dropout before the classifier. Defaults to 0.
        drop_path_rate (float): stochastic depth, growing linearly over the
            blocks to this value. Defaults to 0.
        device (str | torch.device, optional): where the parameters and buffers
            are created (timm's factory argument; ``'meta'`` allocates nothing).
            Defaults to torch's default device.
        dtype (torch.dtype, optional): floating-point dtype of the parameters
            and buffers (timm's factory argument). Defaults to torch's default.
        **backbone_kwargs: other ``SMLPNet`` arguments (``norm_cfg``,
            ``interpolate_mode``, ``with_cp``, ...).

    Shapes:
        ``forward``: ``(B, in_chans, H, W)`` -> ``(B, num_classes)``;
        ``forward_features``: -> ``(B, 8C, ceil(H/32), ceil(W/32))`` (after the
        final BatchNorm); ``forward_head``: that map -> ``(B, num_classes)``, or
        ``(B, 8C)`` with ``pre_logits=True``; ``forward_intermediates``: stage ``i``
        gives ``(B, C * 2**i, ceil(H / 2**(i+2)), ceil(W / 2**(i+2)))``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_chans: int = 3,
                 num_classes: int = 1000,
                 global_pool: str = 'avg',
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 device: Optional[Union[str, torch.device]] = None,
                 dtype: Optional[torch.dtype] = None,
                 **backbone_kwargs):
        super().__init__()
        for key in ('out_indices', 'out_norm', 'init_cfg', 'pretrained'):
            if key in backbone_kwargs:
                raise TypeError(
                    f'SMLPNetTimm: {key}= is not accepted; use timm\'s '
                    'features_only=True, out_indices=(...) for pyramid features, '
                    'and checkpoint_path= for weights')
        if dtype is not None and not (isinstance(dtype, torch.dtype)
                                      and dtype.is_floating_point):
            raise TypeError(f'SMLPNetTimm: dtype={dtype!r}; accepted: None or a '
                            'floating-point torch.dtype (e.g. torch.float32)')
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.grad_checkpointing = bool(backbone_kwargs.get('with_cp', False))
        # timm's factory arguments: every tensor is created on ``device`` (the
        # mmcv / mmengine layers take no device argument, hence torch's
        # default-device context), then cast to ``dtype``
        with torch.device(device) if device is not None else nullcontext():
            self.backbone = SMLPNet(
                arch=arch,
                img_size=img_size,
                in_channels=in_chans,
                out_indices=(-1, ),  # only the last stage, through the final norm
                drop_path_rate=drop_path_rate,
                **backbone_kwargs)
            # the backbone's own init_cfg (trunc-normal Linear layers, unit
            # norms), without BaseModule.init_weights' per-parameter report
            if self.backbone.init_cfg:
                initialize(self.backbone, self.backbone.init_cfg)
            channels = self.backbone.num_features
            self.num_features = self.head_hidden_size = channels[-1]
            self.head = ClassifierHead(self.num_features, num_classes,
                                       pool_type=global_pool, drop_rate=drop_rate)
            self._init_classifier()
        if dtype is not None:
            self.to(dtype=dtype)
        self.feature_info = [
            dict(num_chs=c, reduction=SMLPNet.patch_size * 2**i,
                 module=f'backbone.stages.{i}') for i, c in enumerate(channels)
        ]

    # ------------------------------------------------------------------ helpers
    @property
    def final_norm(self) -> nn.Module:
        """The final BatchNorm (``backbone.norm3``; an Identity once pruned)."""
        return getattr(self.backbone, f'norm{self.backbone.out_indices[-1]}')

    def _init_classifier(self):
        fc = self.head.fc
        if isinstance(fc, (nn.Linear, nn.Conv2d)):
            trunc_normal_(fc.weight, std=.02)
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)

    # ------------------------------------------------------------ timm methods
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        """Parameter groups for timm's layer-wise lr decay."""
        return dict(
            stem=r'^backbone\.patch_embed',
            blocks=r'^backbone\.stages\.(\d+)' if coarse else [
                (r'^backbone\.stages\.(\d+)\.downsample', (0, )),
                (r'^backbone\.stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^backbone\.norm', (99999, )),
            ])

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        """Nothing beyond timm's default: norms, biases and the axial-mixing
        biases are 1-D and excluded from weight decay by timm's optimizer factory."""
        return set()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        """Activation checkpointing per block (``SMLPBlock.with_cp``)."""
        self.grad_checkpointing = enable
        for m in self.backbone.modules():
            if isinstance(m, SMLPBlock):
                m.with_cp = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        """Replace the classifier by a new one with ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        # the new classifier goes where the model is (a head without parameters,
        # after reset_classifier(0), cannot tell timm where that is)
        param = next(self.backbone.parameters())
        self.head.reset(num_classes, pool_type=global_pool,
                        in_features=self.num_features, device=param.device,
                        dtype=param.dtype)
        self._init_classifier()

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Outputs of the stages ``indices`` (timm's feature API).

        Args:
            x: ``(B, in_chans, H, W)``.
            indices: stage indices, negative from the end; an int ``n`` takes the
                last ``n`` stages; None takes all.
            norm: pass the last stage's output through the final BatchNorm.
            stop_early: skip the stages after the last one taken.
            output_fmt: ``'NCHW'`` or ``'NHWC'``.
            intermediates_only: return only the list.

        Returns:
            list of ``(B, C * 2**i, ceil(H / 2**(i+2)), ceil(W / 2**(i+2)))`` (NCHW)
            and, unless ``intermediates_only``, the final feature map first, as
            ``forward_features`` returns it.
        """
        output_fmt = str(getattr(output_fmt, 'value', output_fmt))
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f'SMLPNetTimm: output_fmt={output_fmt!r}; accepted: '
                             "'NCHW', 'NHWC'")
        stages = self.backbone.stages
        taken, max_index = take_indices(len(stages), indices)
        if stop_early:
            stages = stages[:max_index + 1]
        last = len(self.backbone.stages) - 1
        x = self.backbone.forward_stem(x)
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in taken:
                out = self.final_norm(x) if (norm and i == last) else x
                out = out.permute(0, 2, 3, 1) if output_fmt == 'NHWC' else out
                intermediates.append(out.contiguous())
        if intermediates_only:
            return intermediates
        if i == last:
            x = self.final_norm(x)
        return x, intermediates

    def prune_intermediate_layers(self,
                                  indices: Union[int, List[int]] = 1,
                                  prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the stages after the last of ``indices`` (and the final norm and
        the classifier as asked); returns the absolute indices kept."""
        stages = self.backbone.stages
        taken, max_index = take_indices(len(stages), indices)
        prune_end = max_index < len(stages) - 1
        if prune_norm or prune_end:
            setattr(self.backbone, f'norm{self.backbone.out_indices[-1]}',
                    nn.Identity())
        if prune_end:
            self.backbone.stages = stages[:max_index + 1]
            self.backbone.out_indices = (max_index, )
            setattr(self.backbone, f'norm{max_index}', nn.Identity())
            self.num_features = self.head_hidden_size = \
                self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return taken

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W)`` -> ``(B, 8C, ceil(H/32), ceil(W/32))``, after the
        final BatchNorm (``backbone.norm3``)."""
        x = self.backbone.forward_stem(x)
        for stage in self.backbone.stages:
            x = stage(x)
        return self.final_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, 8C, h, w)`` -> pooled ``(B, 8C)`` (``pre_logits``) or logits
        ``(B, num_classes)``."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def take_indices(num: int,
                 indices: Optional[Union[int, List[int]]]) -> Tuple[List[int], int]:
    """timm's ``forward_intermediates`` index convention over ``num`` stages:
    None takes all, an int ``n`` the last ``n``, a list the given ones (negative
    from the end). Returns the sorted absolute indices and the largest."""
    if indices is None:
        taken = list(range(num))
    elif isinstance(indices, int):
        if not 0 < indices <= num:
            raise ValueError(f'indices={indices} must take 1 to {num} stages')
        taken = list(range(num - indices, num))
    else:
        if not all(isinstance(i, int) and -num <= i < num for i in indices):
            raise ValueError(f'indices={indices!r} must be stage indices in '
                             f'[{-num}, {num - 1}]')
        taken = sorted({i % num for i in indices})
    return taken, max(taken)


# --------------------------------------------------------------------- weights
def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor],
                         model: nn.Module) -> Dict[str, torch.Tensor]:
    """Make an mmpretrain / mmsmlp checkpoint loadable by :class:`SMLPNetTimm`.

    Accepts the state dict of an mmpretrain ``ImageClassifier`` with an ``SMLPNet``
    backbone (keys ``backbone.*`` and ``head.fc.*``), a whole mmengine checkpoint
    (``{'state_dict': ...}``), keys with a DDP ``module.`` prefix, or a bare
    ``SMLPNet`` backbone state dict (``patch_embed.*``, ``stages.*``, ``norm3.*``).
    Keys of the data preprocessor and output norms the model does not have (e.g.
    ``backbone.norm0`` of a detection backbone) are dropped, and so is the
    classifier when the model has none (``num_classes=0``). Axial-mixing weights of
    another resolution are resized by the model when it loads them.

    Raises:
        ValueError: official SPACH keys (convert them with
            ``tools/model_converters/smlp2mmsmlp.py`` first) or no sMLPNet keys.
    """
    if 'state_dict' in state_dict and isinstance(state_dict['state_dict'], Mapping):
        state_dict = state_dict['state_dict']
    if any(k.startswith(_OFFICIAL_PREFIXES) for k in state_dict):
        raise ValueError(
            'checkpoint_filter_fn: this is an official SPACH sMLPNet checkpoint '
            f'(keys like {next(iter(state_dict))!r}); convert it first with '
            f'python {_CONVERTER} SRC DST, then load DST')
    own = model.state_dict()
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('module.'):
            key = key[len('module.'):]
        if key.startswith(('patch_embed.', 'stages.', 'norm')):
            key = 'backbone.' + key
        if key.startswith('data_preprocessor.'):
            continue
        if key.startswith('head.fc.') and key not in own:
            continue  # the model has no classifier (num_classes=0)
        if key.startswith('backbone.norm') and key not in own:
            continue  # an output norm of another stage
        out[key] = value
    if not any(k.startswith('backbone.') for k in out):
        raise ValueError(
            'checkpoint_filter_fn: no sMLPNet weights found (expected keys '
            f'backbone.* as in an mmpretrain ImageClassifier); got keys like '
            f'{list(state_dict)[:5]}')
    return out


def _cfg(**kwargs) -> dict:
    return dict(
        url='',  # no weights are published: nothing is ever downloaded
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=(7, 7),
        crop_pct=0.875,
        interpolation='bicubic',
        fixed_input_size=False,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv='backbone.patch_embed.projection',
        classifier='head.fc',
        license='apache-2.0',
        paper_ids='arXiv:2109.05422',
        paper_name='Sparse MLP for Image Recognition: Is Self-Attention Really '
        'Necessary?',
        origin_url='https://github.com/microsoft/SPACH',
        **kwargs)


default_cfgs = generate_default_cfgs({name: _cfg() for name in TIMM_ARCHS})


def _check_pretrained_source(variant: str, kwargs: dict):
    """``pretrained=True`` only with a local file or in-memory state dict."""
    cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.get('pretrained_cfg'),
        pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'))
    if cfg.file or cfg.state_dict is not None or cfg.url or cfg.hf_hub_id:
        return
    raise NoPretrainedWeightsError(
        f'{variant}: no pretrained sMLPNet weights are published, so pretrained=True '
        'has nothing to load (and mmsmlp never downloads). Create the model with '
        'pretrained=False and load a local checkpoint, e.g. '
        f"timm.create_model('{variant}', checkpoint_path='checkpoints/"
        "smlpnet-t_in1k.pth') with an mmpretrain checkpoint trained from "
        "configs/smlpnet/*_in1k.py, or pretrained=True with "
        "pretrained_cfg_overlay=dict(file=PATH) (adapts num_classes). Official "
        f'SPACH checkpoints (smlp_s.pth, smlp_b.pth) are converted first with '
        f'python {_CONVERTER} SRC DST.')


def _create_smlpnet(variant: str, pretrained: bool = False, **kwargs) -> nn.Module:
    if pretrained:
        _check_pretrained_source(variant, kwargs)
    model_kwargs = dict(arch=TIMM_ARCHS[variant])
    model_kwargs.update(kwargs)
    return build_model_with_cfg(
        SMLPNetTimm,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'),
        **model_kwargs)


@register_model
def smlpnet_tiny_a2(pretrained: bool = False, **kwargs) -> SMLPNetTimm:
    """sMLPNet-T* (C=80, depths 2-8-14-2, MLP ratio 2): 19.18 M params, 3.97 GFLOPs."""
    return _create_smlpnet('smlpnet_tiny_a2', pretrained=pretrained, **kwargs)


@register_model
def smlpnet_tiny(pretrained: bool = False, **kwargs) -> SMLPNetTimm:
    """sMLPNet-T (C=80, depths 2-8-14-2, MLP ratio 3): 24.12 M params, 5.01 GFLOPs."""
    return _create_smlpnet('smlpnet_tiny', pretrained=pretrained, **kwargs)


@register_model
def smlpnet_small(pretrained: bool = False, **kwargs) -> SMLPNetTimm:
    """sMLPNet-S (C=96, depths 2-10-24-2, MLP ratio 3): 48.56 M params, 10.35 GFLOPs."""
    return _create_smlpnet('smlpnet_small', pretrained=pretrained, **kwargs)


@register_model
def smlpnet_base(pretrained: bool = False, **kwargs) -> SMLPNetTimm:
    """sMLPNet-B (C=112, depths 2-10-24-2, MLP ratio 3): 65.88 M params, 14.03 GFLOPs."""
    return _create_smlpnet('smlpnet_base', pretrained=pretrained, **kwargs)
