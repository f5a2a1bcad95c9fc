"""Parameters and FLOPs of the model of a config, measured with mmengine's
``FlopAnalyzer`` (the numbers in the READMEs and model-index.yml come from here)."""
from typing import Optional, Sequence, Tuple

import torch

# the input a model of each codebase is measured at, unless given
DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmseg': (512, 512), 'mmdet': (800, 1333)}


def build_from_config(config):
    """(model, scope) of a config (path or ``Config``), built with the MODELS
    registry of its ``default_scope``; no weights are loaded (``init_weights`` is
    not called). mmpretrain configs keep their top-level ``data_preprocessor``, as
    mmpretrain's Runner does."""
    import importlib

    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmsmlp  # noqa: F401
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    scope = cfg.get('default_scope')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = cfg.model.copy()
    if scope == 'mmpretrain' and cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(model_cfg), scope


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(config: str,
            shape: Optional[Sequence[int]] = None,
            flops: bool = True) -> Tuple[int, Optional[int], Tuple[int, int]]:
    """Parameters, FLOPs and the input shape used for ``config``.

    Classifiers and segmentors are measured on their tensor forward
    (``mode='tensor'``: logits / the decode head's maps); detectors on
    ``extract_feat`` (backbone + neck; the RoI heads' FLOPs depend on the
    proposals).
    """
    from mmengine.analysis import FlopAnalyzer
    model, scope = build_from_config(config)
    model.eval()
    shape = tuple(shape or DEFAULT_SHAPES[scope])
    params = count_parameters(model)
    if not flops:
        return params, None, shape
    x = torch.randn(1, 3, *shape)

    class Forward(torch.nn.Module):

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            if scope == 'mmdet':
                return self.m.extract_feat(x)
            return self.m(x, mode='tensor')

    analyzer = FlopAnalyzer(Forward(model), (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return params, int(analyzer.total()), shape
