"""tools/train.py and tools/test.py with the classification toy config
(configs/toy/smlpnet-mini_toy-imagenet.py) on a tiny toy ImageNet set."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmsmlp.datasets.toy_data import make_toy_imagenet

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'toy', 'smlpnet-mini_toy-imagenet.py')


@pytest.fixture(scope='module')
def toy_imagenet(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'toy_imagenet')
    make_toy_imagenet(root, num_train_per_class=4, num_val_per_class=2, seed=0,
                      min_size=64, max_size=128)
    return root


def overrides(root, epochs=1):
    opts = [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            f'default_hooks.checkpoint.interval={epochs}',
            'default_hooks.logger.interval=1', 'train_dataloader.batch_size=8']
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={root}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    return opts


def run(args):
    # one intra-op thread: much faster than two on a busy 2-core machine
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    return subprocess.run(args, capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=env)


def test_train_then_test_prints_accuracy(toy_imagenet, tmp_path):
    work = str(tmp_path / 'work')
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
               '--cfg-options'] + overrides(toy_imagenet))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert 'Epoch(train) [1][2/2]' in log  # 16 images, batch 8
    assert 'accuracy/top1' in log and 'accuracy/top2' in log
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)

    out = str(tmp_path / 'preds.pkl')
    res = run([sys.executable, 'tools/test.py', CONFIG, ckpt, '--work-dir', work,
               '--out', out, '--cfg-options'] + overrides(toy_imagenet))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert 'accuracy/top1' in log
    assert osp.isfile(out)


def test_missing_toy_data_is_a_clear_error(tmp_path):
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir',
               str(tmp_path / 'w'), '--cfg-options'] +
              overrides(str(tmp_path / 'nowhere')))
    assert res.returncode != 0
    assert 'data_root' in res.stderr and 'nowhere' in res.stderr
    assert not osp.exists(tmp_path / 'w')
