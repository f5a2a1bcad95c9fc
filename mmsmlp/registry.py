"""Registries of mmsmlp.

mmsmlp registers its modules in mmengine's *root* registries. mmdet, mmseg and
mmpretrain each have a child registry whose look-up falls back to its parent, so
``type='SMLPNet'`` builds under any ``default_scope`` (mmdet, mmseg or mmpretrain)
once ``mmsmlp`` is imported (``custom_imports=dict(imports=['mmsmlp'])``), and no
config has to write a scope prefix.
"""
from mmengine.registry import (DATASETS, HOOKS, MODEL_WRAPPERS, MODELS,
                               OPTIM_WRAPPER_CONSTRUCTORS, TRANSFORMS)

__all__ = ['MODELS', 'DATASETS', 'HOOKS', 'MODEL_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS',
           'TRANSFORMS']
