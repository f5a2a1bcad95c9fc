"""Parameters and FLOPs of the model of a config, measured with mmengine's
``FlopAnalyzer`` (the numbers in the READMEs and model-index.yml come from here)."""
from typing import Optional, Sequence, Tuple

import torch

# the input a model of each codebase is measured at, unless given
DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmseg': (512, 512), 'mmdet': (800, 1333)}


def build_from_config(config: str):
    """(model in eval mode, scope) of a config file, without pretrained weights."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import mmsmlp  # noqa: F401
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope')
    __import__(f'{scope}.registry')
    import sys
    registry = sys.modules[f'{scope}.registry'].MODELS
    if cfg.model.get('backbone', {}).get('init_cfg'):
        cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg.model).eval(), scope


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
