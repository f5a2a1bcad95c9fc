"""mmsmlp: sparse-MLP vision backbones (sMLPNet, ResMLP, S2-MLP) for OpenMMLab."""
from . import datasets, engine, models  # noqa: F401  (registers modules, hooks, transforms)
from .models import timm_models  # noqa: F401  (registers the smlpnet_* timm models)
from .version import __version__

__all__ = ['__version__']
