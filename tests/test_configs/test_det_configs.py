"""Every detection config in configs/ builds its model and runs a forward."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmsmlp  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', '*', '*coco*.py')))


def test_configs_found():
    assert len(DET_CONFIGS) >= 9, DET_CONFIGS


@pytest.mark.parametrize('path', DET_CONFIGS, ids=osp.basename)
def test_det_config_builds_and_predicts(path):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.type in ('SMLPNet', 'ResMLP', 'S2MLP')
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model).eval()
        # two images of different sizes and aspect ratios, sides not multiples of 32
        data = demo_mm_inputs(2, [[3, 130, 170], [3, 97, 75]], num_classes=3,
                              with_mask=True)
        with torch.no_grad():
            results = model.test_step(data)
    assert len(results) == 2
    assert 'pred_instances' in results[0]


def test_toy_det_config_trains_one_step():
    """A training step through the data preprocessor, with BN statistics updated."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.optim import build_optim_wrapper
    path = osp.join(ROOT, 'configs', 'smlpnet', 'mask-rcnn_smlpnet-t_fpn_1x_coco.py')
    cfg = Config.fromfile(path)
    cfg.model.backbone.arch = dict(embed_dims=16, depths=[1, 1, 1, 1])
    cfg.model.backbone.init_cfg = None
    cfg.model.neck.in_channels = [16, 32, 64, 128]
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        model.train()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        data = demo_mm_inputs(2, [[3, 160, 128], [3, 128, 192]], num_classes=3,
                              with_mask=True)
        losses = model.train_step(data, optim)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert 'loss_mask' in losses


def test_no_decay_on_norms_and_axial_biases():
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    path = osp.join(ROOT, 'configs', 'smlpnet', 'mask-rcnn_smlpnet-t_fpn_1x_coco.py')
    cfg = Config.fromfile(path)
    cfg.model.backbone.arch = dict(embed_dims=16, depths=[1, 1, 1, 1])
    cfg.model.neck.in_channels = [16, 32, 64, 128]
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names.get(id(p)): g['weight_decay'] for g in optim.param_groups
             for p in g['params']}
    assert decay['backbone.stages.0.blocks.0.sparse_mlp.mix_height.bias'] == 0
    assert decay['backbone.stages.0.blocks.0.sparse_mlp.mix_width.bias'] == 0
    assert decay['backbone.stages.0.blocks.0.local_norm.weight'] == 0
    assert decay['backbone.stages.0.blocks.0.channel_norm.bias'] == 0
    assert decay['backbone.norm3.weight'] == 0
    assert decay['backbone.stages.0.blocks.0.sparse_mlp.mix_height.weight'] == 0.05
    assert decay['backbone.stages.0.blocks.0.channel_mlp.fc1.weight'] == 0.05
