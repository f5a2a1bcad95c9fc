"""Pretrain -> finetune on toy data: a toy classifier's checkpoint initialises a
detector's backbone through init_cfg with prefix 'backbone.', with no missing
backbone keys and the axial weights resized from 128 px to the detector's 224."""
import os.path as osp
import re
import subprocess
import sys

from mmsmlp.datasets.toy_data import make_toy_coco, make_toy_imagenet

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLS = osp.join(ROOT, 'configs', 'toy', 'smlpnet-mini_toy-imagenet.py')
DET = osp.join(ROOT, 'configs', 'toy',
               'mask-rcnn_smlpnet-mini_fpn_toy-coco_from-toy-imagenet.py')


def _loaders(root):
    opts = []
    for s in ('train', 'val', 'test'):
        opts += [f'{s}_dataloader.dataset.data_root={root}', f'{s}_dataloader.num_workers=0',
                 f'{s}_dataloader.persistent_workers=False']
    return opts


def test_classifier_checkpoint_initialises_the_detector_backbone(tmp_path):
    cls_root, det_root = str(tmp_path / 'imagenet'), str(tmp_path / 'coco')
    make_toy_imagenet(cls_root, num_train_per_class=4, num_val_per_class=1)
    make_toy_coco(det_root, num_train=2, num_val=1)
    work = tmp_path / 'work'
    res = subprocess.run(
        [sys.executable, 'tools/train.py', CLS, '--work-dir', str(work / 'cls'),
         '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5',
         'train_dataloader.batch_size=4'] + _loaders(cls_root),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = (work / 'cls' / 'last_checkpoint').read_text().strip()

    ann = osp.join(det_root, 'annotations', 'instances_val.json')
    res = subprocess.run(
        [sys.executable, 'tools/train.py', DET, '--work-dir', str(work / 'det'),
         '--cfg-options', f'model.backbone.init_cfg.checkpoint={ckpt}',
         'train_cfg.max_iters=1',
         'train_cfg.val_interval=5', 'train_dataloader.batch_size=2',
         f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}'] +
        _loaders(det_root),
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    found = re.search(r'SMLPNet: the checkpoint provides (\d+) of the (\d+) backbone '
                      r"tensors \(prefix ''\); missing: none", log)
    assert found and found.group(1) == found.group(2), log[-3000:]
    assert 'missing keys in source state_dict' not in log
    assert re.search(r'Resized .*mix_width.weight from grid \(32,\) to \(56,\)', log)
