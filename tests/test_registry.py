"""One registration (mmengine's root MODELS) reachable from all three codebases."""
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.registry import DefaultScope

import mmsmlp  # noqa: F401

SMALL = dict(embed_dims=16, depths=[1, 1, 2, 1])


@pytest.mark.parametrize('scope,registry', [
    ('mmdet', 'mmdet.registry'),
    ('mmseg', 'mmseg.registry'),
    ('mmpretrain', 'mmpretrain.registry'),
])
def test_build_from_each_codebase_registry(scope, registry):
    models = __import__(registry, fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        backbone = models.build(dict(type='SMLPNet', arch=SMALL))
    assert type(backbone).__name__ == 'SMLPNet'
    outs = backbone.eval()(torch.randn(1, 3, 96, 64))
    assert [o.shape[1] for o in outs] == [16, 32, 64, 128]


CONFIGS = {
    'mmdet': """
        _base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
        custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)
        model = dict(backbone=dict(_delete_=True, type='SMLPNet',
                     arch=dict(embed_dims=16, depths=[1, 1, 2, 1]), out_indices=(1, 2, 3)),
                     neck=dict(in_channels=[32, 64, 128]))
    """,
    'mmseg': """
        _base_ = 'mmseg::upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py'
        custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(pretrained=None,
                     backbone=dict(_delete_=True, type='SMLPNet',
                     arch=dict(embed_dims=16, depths=[1, 1, 2, 1])),
                     decode_head=dict(in_channels=[16, 32, 64, 128], norm_cfg=norm_cfg),
                     auxiliary_head=dict(in_channels=64, norm_cfg=norm_cfg))
    """,
    'mmpretrain': """
        _base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
        custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)
        model = dict(backbone=dict(_delete_=True, type='SMLPNet',
                     arch=dict(embed_dims=16, depths=[1, 1, 2, 1]), out_indices=(3, )),
                     head=dict(in_channels=128))
    """,
}

SCRIPT = """
import sys, torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings
cfg = Config.fromfile(sys.argv[1])
import_modules_from_strings(**cfg.custom_imports)
init_default_scope(cfg.default_scope)
from mmengine.registry import MODELS
model = MODELS.build(cfg.model).eval()
feats = model.extract_feat(torch.randn(1, 3, 128, 96))
print(type(model.backbone).__name__, [tuple(f.shape) for f in feats])
"""


@pytest.mark.parametrize('scope', list(CONFIGS))
def test_config_with_custom_imports_only(tmp_path, scope):
    """A fresh interpreter that never imports mmsmlp itself: the config's
    custom_imports line is all it takes."""
    cfg = tmp_path / f'{scope}_cfg.py'
    cfg.write_text(textwrap.dedent(CONFIGS[scope]))
    script = tmp_path / 'build.py'
    script.write_text(SCRIPT)
    res = subprocess.run([sys.executable, str(script), str(cfg)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1].startswith('SMLPNet')


def test_inherited_resnet_pretrained_is_explained():
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        with pytest.raises(ValueError, match=r"pretrained='open-mmlab://resnet50_v1c'"
                           r'.*model.pretrained=None'):
            MODELS.build(dict(type='SMLPNet', arch=SMALL,
                              pretrained='open-mmlab://resnet50_v1c'))
