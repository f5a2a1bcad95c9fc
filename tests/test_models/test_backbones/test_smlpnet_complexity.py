"""Parameter and FLOP counts of the sMLPNet classifiers against the paper's table
(``../shared/reference/smlpnet-facts.md``), measured with mmengine's FlopAnalyzer."""
import pytest
import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.registry import DefaultScope

import mmsmlp  # noqa: F401

# arch: (C, params in M, GFLOPs at 224)
TABLE = {
    'tiny-a2': (80, 19.18, 3.97),
    'tiny': (80, 24.12, 5.01),
    'small': (96, 48.56, 10.35),
    'base': (112, 65.88, 14.03),
}


def build_classifier(arch, channels):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='SMLPNet', arch=arch, out_indices=(3, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=8 * channels))).eval()


@pytest.mark.parametrize('arch', list(TABLE))
def test_params_and_flops_match_the_paper(arch):
    channels, params_m, gflops = TABLE[arch]
    model = build_classifier(arch, channels)
    assert abs(parameter_count(model)[''] / 1e6 - params_m) < 0.01
    analyzer = FlopAnalyzer(model, torch.randn(1, 3, 224, 224))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    assert abs(analyzer.total() / 1e9 - gflops) < 0.02
    # every product is seen: only element-wise ops, the corner padding (a copy)
    # and the arithmetic on the traced input size that computes it are left
    assert set(analyzer.unsupported_ops()) <= {'aten::add', 'aten::gelu', 'aten::mul',
                                               'aten::pad', 'aten::neg', 'aten::sub'}


def test_axial_mixing_flops_are_counted_in_full():
    """A broadcast (n, n) @ (B, C, n, m) matmul is under-counted by mmengine's
    handler; the sMLP must use a form that is counted exactly."""
    from mmsmlp.models.backbones.smlpnet import SparseMLP
    b, h, w, c = 2, 6, 10, 8
    smlp = SparseMLP(c, (h, w))
    flops = FlopAnalyzer(smlp, torch.randn(b, h, w, c)).total()
    expected = b * h * w * (w + h) * c + b * h * w * 3 * c * c
    assert flops == expected
