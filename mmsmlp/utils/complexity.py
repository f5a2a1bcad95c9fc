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


class TensorForward(torch.nn.Module):
    """The tensor-to-tensor forward of a model of any codebase: a classifier's
    logits and a segmentor's decode-head maps (their ``mode='tensor'``), a
    detector's backbone + neck maps (``extract_feat``: the heads need per-image
    metadata). What :func:`measure` counts and ``tools/deployment/export.py``
    exports.

    Shapes:
        input ``(B, 3, H, W)`` (normalised as the model's data preprocessor
        does); output: a tensor or a tuple of tensors.
    """

    def __init__(self, model: torch.nn.Module, scope: str):
        super().__init__()
        if scope not in DEFAULT_SHAPES:
            raise ValueError(f'TensorForward: scope={scope!r}; accepted: '
                             f'{sorted(DEFAULT_SHAPES)}')
        self.model = model
        self.scope = scope

    def forward(self, x: torch.Tensor):
        if self.scope == 'mmdet':
            return self.model.extract_feat(x)
        return self.model(x, mode='tensor')


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
    analyzer = FlopAnalyzer(TensorForward(model, scope), (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return params, int(analyzer.total()), shape
