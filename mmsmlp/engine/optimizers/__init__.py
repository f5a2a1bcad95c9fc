"""Optimizer wrapper constructors of mmsmlp (registered in mmengine's root
OPTIM_WRAPPER_CONSTRUCTORS)."""
from .layer_decay_optim_wrapper_constructor import LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor']
