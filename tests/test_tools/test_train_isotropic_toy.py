"""tools/train.py with the isotropic backbones (ResMLP, S2-MLP) and their simple
feature pyramid: a toy Mask R-CNN and a toy UperNet each train a few iterations
with each backbone, validate, and save a checkpoint that loads with
``weights_only=True``."""
import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from mmsmlp.datasets.toy_data import make_toy_ade20k, make_toy_coco

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY = osp.join(ROOT, 'configs', 'toy')
ITERS = 2
# config: (task, key of a weight that only this backbone has)
RESMLP_KEY = 'backbone.blocks.0.token_mix.weight'
S2MLP_KEY = 'backbone.blocks.0.spatial_mlp.fc1.weight'
CONFIGS = {
    'mask-rcnn_resmlp-mini_fpn_toy-coco.py': ('det', RESMLP_KEY),
    'mask-rcnn_s2mlp-mini_fpn_toy-coco.py': ('det', S2MLP_KEY),
    'upernet_resmlp-mini_toy-ade20k.py': ('seg', RESMLP_KEY),
    'upernet_s2mlp-mini_toy-ade20k.py': ('seg', S2MLP_KEY),
}


@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    coco, ade = str(root / 'toy_coco'), str(root / 'toy_ade20k')
    make_toy_coco(coco, num_train=4, num_val=2, min_size=64, max_size=128, seed=0)
    make_toy_ade20k(ade, num_train=4, num_val=2, min_size=64, max_size=128, seed=0)
    return dict(det=coco, seg=ade)


def overrides(task, root):
    """Few iterations, batch 2, no worker processes, small images."""
    opts = [f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
            f'default_hooks.checkpoint.interval={ITERS}',
            'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2']
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={root}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    if task == 'det':
        ann = osp.join(root, 'annotations', 'instances_val.json')
        opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
                 # RandomChoiceResize / Resize of the toy config's pipelines
                 'train_dataloader.dataset.pipeline.2.scales=[(96,96),(128,128)]',
                 'val_dataloader.dataset.pipeline.1.scale=(128,128)']
    else:
        opts += ['train_dataloader.dataset.pipeline.3.scale=(128,128)',  # RandomResize
                 'val_dataloader.dataset.pipeline.1.scale=(128,128)']  # Resize
    return opts


@pytest.mark.parametrize('name', list(CONFIGS))
def test_train_a_few_iterations(toy_data, tmp_path, name):
    task, key = CONFIGS[name]
    work = str(tmp_path / 'work')
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    res = subprocess.run(
        [sys.executable, 'tools/train.py', osp.join(TOY, name), '--work-dir', work,
         '--cfg-options'] + overrides(task, toy_data[task]),
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    # every iteration logged finite losses
    losses = re.findall(r'Iter\(train\) \[\s*\d+/\d+\].*?\sloss: (\S+)', log)
    assert len(losses) == ITERS, log[-3000:]
    assert all(math.isfinite(float(v)) for v in losses), losses
    # validation at the end of training
    assert ('coco/bbox_mAP' in log and 'coco/segm_mAP' in log) if task == 'det' \
        else 'mIoU' in log
    # the checkpoint holds this backbone and its pyramid, and loads safely
    ckpt = osp.join(work, f'iter_{ITERS}.pth')
    assert osp.isfile(ckpt)
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert key in state
    assert any(k.startswith('backbone.pyramid.levels.3.') for k in state)
