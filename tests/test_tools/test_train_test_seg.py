"""tools/train.py and tools/test.py on a tiny toy ADE20K set: sliding-window and
whole-image evaluation, bad label files, missing folders."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import cv2
import pytest

from mmsmlp.datasets.toy_data import make_toy_ade20k

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'toy', 'upernet_smlpnet-mini_toy-ade20k.py')
WHOLE = osp.join(ROOT, 'configs', 'toy', 'upernet_smlpnet-mini_toy-ade20k_whole.py')


@pytest.fixture(scope='module')
def toy_ade(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'toy_ade20k')
    make_toy_ade20k(root, num_train=4, num_val=2, min_size=64, max_size=128, seed=0)
    return root


def copy_of(root, tmp_path):
    dst = str(tmp_path / 'toy_ade20k')
    shutil.copytree(root, dst)
    return dst


def overrides(root, iters=3):
    opts = [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=2'
    ]
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={root}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    return opts


def run(args):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)


def test_train_then_test_slide_and_whole(toy_ade, tmp_path):
    work = str(tmp_path / 'work')
    res = run(['tools/train.py', CONFIG, '--work-dir', work, '--cfg-options'] +
              overrides(toy_ade))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert 'mIoU' in log  # validation at the end of training
    ckpt = osp.join(work, 'iter_3.pth')
    assert osp.isfile(ckpt)

    # sliding windows (the toy config's test mode), with pictures
    res = run(['tools/test.py', CONFIG, ckpt, '--work-dir', work, '--show-dir', 'vis',
               '--cfg-options'] + overrides(toy_ade))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert "'mode': 'slide'" in log or 'mode=slide' in log or "mode='slide'" in log
    assert 'mIoU' in log and 'aAcc' in log
    assert len(glob.glob(osp.join(work, 'vis', '**', '*.png'), recursive=True)) == 2

    # whole images, same checkpoint
    res = run(['tools/test.py', WHOLE, ckpt, '--work-dir', work, '--cfg-options'] +
              overrides(toy_ade))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert "mode='whole'" in log or "'mode': 'whole'" in log
    assert 'mIoU' in log


def test_bad_label_files(toy_ade, tmp_path):
    """Training warns about each bad label file, naming it, and finishes on the
    valid ones; evaluation stops with an error naming the bad file."""
    root = copy_of(toy_ade, tmp_path)
    ann = osp.join(root, 'annotations', 'training')
    wrong_size = osp.join(ann, 'toy_train_000001.png')
    label = cv2.imread(wrong_size, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(wrong_size, label[:-5, :-3])
    out_of_range = osp.join(ann, 'toy_train_000002.png')
    label = cv2.imread(out_of_range, cv2.IMREAD_UNCHANGED)
    label[:4, :4] = 9  # label 8 after reduce_zero_label; 5 classes
    cv2.imwrite(out_of_range, label)

    work = str(tmp_path / 'work')
    # 4 iterations x 2 images: every training image is drawn at least once
    res = run(['tools/train.py', CONFIG, '--work-dir', work, '--cfg-options'] +
              overrides(root, iters=4))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    warnings = [line for line in log.splitlines() if 'CheckSegMap' in line]
    assert any('toy_train_000001.png' in w and 'WARNING' in w and 'image is' in w
               for w in warnings), warnings
    assert any('toy_train_000002.png' in w and 'label(s) 8' in w for w in warnings)
    assert osp.isfile(osp.join(work, 'iter_4.pth'))

    # a bad validation label: evaluation cannot skip it
    bad_val = osp.join(root, 'annotations', 'validation', 'toy_val_000000.png')
    shutil.copy(wrong_size, bad_val)
    res = run(['tools/test.py', CONFIG, osp.join(work, 'iter_4.pth'), '--work-dir',
               work, '--cfg-options'] + overrides(root))
    assert res.returncode != 0
    assert 'InvalidSegMapError' in res.stderr and 'toy_val_000000.png' in res.stderr


@pytest.mark.parametrize('folder,key', [
    ('annotations/training', 'data_prefix.seg_map_path'),
    ('images/training', 'data_prefix.img_path'),
])
def test_missing_folder(toy_ade, tmp_path, folder, key):
    root = copy_of(toy_ade, tmp_path)
    shutil.rmtree(osp.join(root, folder))
    work = str(tmp_path / 'work')
    res = run(['tools/train.py', CONFIG, '--work-dir', work, '--cfg-options'] +
              overrides(root))
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()[-1]
    assert f'train_dataloader.dataset.{key}' in err and folder in err, err
    assert 'does not exist' in err and 'Traceback' not in res.stderr
    assert not osp.exists(work)  # nothing written before the check
