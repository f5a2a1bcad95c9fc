"""Layer-wise learning-rate decay for any backbone that reports the depth of its
parameters through ``get_layer_depth(param_name, prefix)``."""
from collections import defaultdict
from typing import List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from mmsmlp.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['LayerDecayOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus layer-wise lr decay.

    The parameter groups are first built by
    :class:`mmengine.optim.DefaultOptimWrapperConstructor`, so every setting of
    its ``paramwise_cfg`` keeps its meaning (``norm_decay_mult``,
    ``bias_decay_mult``, ``flat_decay_mult``, ``custom_keys`` with ``lr_mult`` /
    ``decay_mult``, ...). Then the lr of each group is multiplied by

    ``layer_decay_rate ** (num_layers - 1 - layer_depth)``

    where ``(layer_depth, num_layers) = module.get_layer_depth(name, prefix)`` is
    asked from the module named by ``layer_decay_module`` (the backbone). The
    deepest layer (and, by the ``get_layer_depth`` convention, every parameter
    outside the backbone, e.g. the heads) keeps the base lr; the stem gets the
    smallest one. mmseg's own ``LayerDecayOptimizerConstructor`` only knows
    ConvNeXt and BEiT names; this one works for any backbone with
    ``get_layer_depth`` (sMLPNet, and mmpretrain's ViT / ConvNeXt / ...).

    Extra ``paramwise_cfg`` keys:

    - ``layer_decay_rate`` (float): the decay factor, in ``(0, 1]``; 1 disables
      the decay. Defaults to 1.
    - ``layer_decay_module`` (str): dotted attribute path, from the model, of the
      module that has ``get_layer_depth``; ``''`` for the model itself.
      Defaults to ``'backbone'``.

    Each parameter group holds one parameter (as with mmengine's constructor) and
    gets two extra keys, ``layer_id`` and ``lr_scale``, which the optimizers and
    the param schedulers ignore.

    Example::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(
                layer_decay_rate=0.9,
                norm_decay_mult=0.,
                custom_keys={'mix_height.bias': dict(decay_mult=0.),
                             'mix_width.bias': dict(decay_mult=0.)}))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        rate = self.paramwise_cfg.get('layer_decay_rate', 1.)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
                or not 0 < rate <= 1:
            raise ValueError(f'{type(self).__name__}: paramwise_cfg.layer_decay_rate '
                             f'must be a number in (0, 1], got {rate!r}')
        path = self.paramwise_cfg.get('layer_decay_module', 'backbone')
        if not isinstance(path, str):
            raise TypeError(f'{type(self).__name__}: paramwise_cfg.layer_decay_module '
                            f'must be a str (e.g. \'backbone\'), got {path!r}')
        if self.base_lr is None:
            raise ValueError(f'{type(self).__name__}: the optimizer config needs an '
                             'explicit lr to decay')
        self.layer_decay_rate = float(rate)
        self.layer_decay_module = path
        # The default constructor skips paramwise processing for an empty
        # paramwise_cfg; the two keys above keep it non-empty.

    def _depth_module(self, model: nn.Module) -> Tuple[nn.Module, str]:
        """The module answering ``get_layer_depth`` and its name prefix."""
        module = model
        for attr in filter(None, self.layer_decay_module.split('.')):
            if not hasattr(module, attr):
                raise AttributeError(
                    f'{type(self).__name__}: the model {type(model).__name__} has no '
                    f'module {self.layer_decay_module!r} (paramwise_cfg.'
                    f'layer_decay_module) for layer-wise lr decay')
            module = getattr(module, attr)
        if not callable(getattr(module, 'get_layer_depth', None)):
            raise TypeError(
                f'{type(self).__name__}: {type(module).__name__} (model.'
                f'{self.layer_decay_module or "<root>"}) has no get_layer_depth('
                'param_name, prefix) method, so layer-wise lr decay cannot be '
                'applied; use the default constructor or another backbone')
        prefix = f'{self.layer_decay_module}.' if self.layer_decay_module else ''
        return module, prefix

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   **kwargs) -> None:
        """Build the groups as the default constructor does, then, on the
        outermost call (the whole model), scale their lrs by depth."""
        start = len(params)
        super().add_params(params, module, prefix=prefix, **kwargs)
        if prefix == '':
            self._decay(params[start:], module)

    def _decay(self, groups: List[dict], model: nn.Module) -> None:
        depth_module, prefix = self._depth_module(model)
        names = {id(p): n for n, p in model.named_parameters()}
        summary = defaultdict(int)
        for group in groups:
            if len(group['params']) != 1:  # never made by the default constructor
                raise RuntimeError(f'{type(self).__name__}: expected one parameter '
                                   f'per group, got {len(group["params"])}')
            name = names[id(group['params'][0])]
            depth, num_layers = depth_module.get_layer_depth(name, prefix)
            if not 0 <= depth < num_layers:
                raise ValueError(f'{type(self).__name__}: get_layer_depth({name!r}) '
                                 f'returned depth {depth} outside [0, {num_layers})')
            scale = self.layer_decay_rate**(num_layers - 1 - depth)
            group['lr'] = group.get('lr', self.base_lr) * scale
            group['lr_scale'] = scale
            group['layer_id'] = depth
            summary[(depth, scale)] += 1
        lines = [f'  depth {d:3d}: lr scale {s:.4g}, {n} parameter tensor(s)'
                 for (d, s), n in sorted(summary.items())]
        print_log(f'layer-wise lr decay (rate {self.layer_decay_rate}, from '
                  f'model.{self.layer_decay_module or "<root>"}):\n' + '\n'.join(lines),
                  logger='current')
