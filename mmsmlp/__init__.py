"""mmsmlp: sparse-MLP vision backbones (sMLPNet, ResMLP, S2-MLP) for OpenMMLab."""
from .version import __version__, check_dependencies

check_dependencies()

from . import datasets, engine, models  # noqa: E402,F401  (registers modules, hooks, transforms)
from .models import timm_models  # noqa: E402,F401  (registers the smlpnet_* timm models)
from .utils import checkpoint  # noqa: E402,F401  (mmengine reads checkpoints with it)

# mmengine resolves `_base_ = 'pkg::path'` only for the packages it lists; list this
# one, so that configs can inherit mmsmlp's (once mmsmlp is imported, as our tools do).
from mmengine.config.utils import MODULE2PACKAGE  # noqa: E402

MODULE2PACKAGE.setdefault('mmsmlp', 'mmsmlp')

__all__ = ['__version__']
