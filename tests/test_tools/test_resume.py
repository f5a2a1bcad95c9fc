"""A run killed with SIGKILL and restarted with --resume ends with the same
weights as an uninterrupted run (CPU, deterministic settings, toy set)."""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmsmlp.datasets.toy_data import make_toy_coco

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'toy', 'mask-rcnn_smlpnet-mini_fpn_toy-coco.py')
ITERS = 6


@pytest.fixture(scope='module')
def toy_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'toy_coco')
    make_toy_coco(root, num_train=8, num_val=2, seed=1)
    return root


def command(root, work, *extra):
    opts = [f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS + 1}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1',
            'train_dataloader.batch_size=2', 'randomness.deterministic=True',
            'model.backbone.drop_path_rate=0.1']
    ann = osp.join(root, 'annotations', 'instances_val.json')
    opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={root}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    return [sys.executable, 'tools/train.py', CONFIG, '--work-dir', work, *extra,
            '--cfg-options'] + opts


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def test_resume_after_sigkill_matches_uninterrupted_run(toy_coco, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    ref_dir, kill_dir = str(tmp_path / 'ref'), str(tmp_path / 'killed')
    res = subprocess.run(command(toy_coco, ref_dir), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]

    # kill at an arbitrary moment after the first checkpoint, before the end
    proc = subprocess.Popen(command(toy_coco, kill_dir), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not osp.exists(osp.join(kill_dir, 'iter_1.pth')) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not osp.exists(osp.join(kill_dir, f'iter_{ITERS}.pth')), \
        'the run finished before it was killed'

    res = subprocess.run(command(toy_coco, kill_dir, '--resume'), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'Advance dataloader' in res.stdout + res.stderr  # it really resumed

    ref, resumed = weights(osp.join(ref_dir, f'iter_{ITERS}.pth')), \
        weights(osp.join(kill_dir, f'iter_{ITERS}.pth'))
    assert ref.keys() == resumed.keys()
    for k in ref:
        torch.testing.assert_close(resumed[k], ref[k], rtol=0, atol=0, msg=k)


def test_resume_skips_a_truncated_last_checkpoint(toy_coco, tmp_path):
    from mmsmlp.engine.launch import latest_loadable_checkpoint
    work = tmp_path / 'w'
    work.mkdir()
    good = work / 'iter_1.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}}, good)
    time.sleep(0.01)
    bad = work / 'iter_2.pth'
    bad.write_bytes(good.read_bytes()[:50])
    (work / 'last_checkpoint').write_text(str(bad))
    assert latest_loadable_checkpoint(str(work)) == str(good)
