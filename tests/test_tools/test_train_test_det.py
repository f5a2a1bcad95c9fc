"""tools/train.py, tools/test.py and tools/dist_train.sh on a tiny toy COCO set."""
import glob
import json
import os
import os.path as osp
import random
import subprocess
import sys

import pytest

from mmsmlp.datasets.toy_data import make_toy_coco

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'toy', 'mask-rcnn_smlpnet-mini_fpn_toy-coco.py')


@pytest.fixture(scope='module')
def toy_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'toy_coco')
    make_toy_coco(root, num_train=8, num_val=4, seed=0)
    return root


def overrides(root, iters=4):
    ann_val = osp.join(root, 'annotations', 'instances_val.json')
    opts = [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=2', f'val_evaluator.ann_file={ann_val}',
        f'test_evaluator.ann_file={ann_val}'
    ]
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={root}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    return opts


def run(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=env, **kw)


def test_train_then_test_prints_coco_metrics(toy_coco, tmp_path):
    work = str(tmp_path / 'work')
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
               '--cfg-options'] + overrides(toy_coco))
    assert res.returncode == 0, res.stderr[-4000:]
    log = res.stdout + res.stderr
    assert 'eta:' in log  # progress with ETA
    assert 'coco/bbox_mAP' in log
    ckpt = osp.join(work, 'iter_4.pth')
    assert osp.isfile(ckpt)

    res = run([sys.executable, 'tools/test.py', CONFIG, ckpt, '--work-dir', work,
               '--show-dir', 'vis', '--cfg-options'] + overrides(toy_coco))
    assert res.returncode == 0, res.stderr[-4000:]
    log = res.stdout + res.stderr
    assert 'coco/bbox_mAP_50' in log and 'coco/segm_mAP' in log
    assert glob.glob(osp.join(work, '*', 'vis', '*.jpg'))


def test_distributed_two_processes_on_cpu(toy_coco, tmp_path):
    work = str(tmp_path / 'dist')
    env = dict(os.environ, PORT=str(random.randint(20000, 40000)), PYTHONUNBUFFERED='1',
               PYTHON=sys.executable, OMP_NUM_THREADS='1')
    res = subprocess.run(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work,
                          '--cfg-options'] + overrides(toy_coco, iters=2),
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    assert "'backend': 'gloo'" in log or 'backend=gloo' in log or 'gloo' in log
    assert osp.isfile(osp.join(work, 'iter_2.pth'))


def _assert_refused(res, *words, work=None):
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()[-1]
    for w in words:
        assert w in err, err
    assert 'Traceback' not in res.stderr
    if work is not None:
        assert not osp.exists(work)  # nothing half-written for a later --resume


def test_missing_config(tmp_path):
    res = run([sys.executable, 'tools/train.py', 'configs/toy/nope.py'])
    _assert_refused(res, 'config file', 'nope.py', 'does not exist')


def test_unknown_launcher(tmp_path):
    res = run([sys.executable, 'tools/train.py', CONFIG, '--launcher', 'kubernetes'])
    assert res.returncode != 0
    assert "--launcher: invalid choice: 'kubernetes'" in res.stderr


def test_missing_dataset_folder(tmp_path):
    work = str(tmp_path / 'work')
    missing = str(tmp_path / 'no_data')
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
               '--cfg-options'] + overrides(missing))
    _assert_refused(res, 'train_dataloader.dataset.data_root', 'no_data', work=work)


def test_missing_annotation_file(toy_coco, tmp_path):
    work = str(tmp_path / 'work')
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
               '--cfg-options'] + overrides(toy_coco) +
              ['train_dataloader.dataset.ann_file=annotations/missing.json'])
    _assert_refused(res, 'ann_file', 'missing.json', 'does not exist', work=work)


def test_malformed_annotation_json(toy_coco, tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"images": [1, 2,')
    work = str(tmp_path / 'work')
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
               '--cfg-options'] + overrides(toy_coco) +
              [f'train_dataloader.dataset.ann_file={bad}'])
    _assert_refused(res, 'bad.json', 'not valid JSON', work=work)
    # valid JSON without the COCO lists
    bad.write_text(json.dumps({'images': []}))
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
               '--cfg-options'] + overrides(toy_coco) +
              [f'train_dataloader.dataset.ann_file={bad}'])
    _assert_refused(res, 'bad.json', "['annotations', 'categories']", work=work)


def test_test_tool_missing_checkpoint(tmp_path):
    res = run([sys.executable, 'tools/test.py', CONFIG, str(tmp_path / 'x.pth')])
    _assert_refused(res, 'checkpoint', 'x.pth', 'does not exist')


@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='CPU only')
def test_amp_without_gpu(toy_coco, tmp_path):
    work = str(tmp_path / 'work')
    res = run([sys.executable, 'tools/train.py', CONFIG, '--amp', '--work-dir', work,
               '--cfg-options'] + overrides(toy_coco))
    _assert_refused(res, '--amp needs a CUDA device', work=work)


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
@pytest.mark.parametrize('option', ['foo', '=3', 'train_cfg..max_iters=3'])
def test_cfg_option_not_key_value(tool, option, tmp_path):
    work = str(tmp_path / 'work')
    ckpt = [str(tmp_path / 'x.pth')] if tool == 'tools/test.py' else []
    res = run([sys.executable, tool, CONFIG] + ckpt + [
        '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=2', option])
    assert res.returncode == 2  # an argparse error, with the usage above it
    _assert_refused(res, f'{osp.basename(tool)}: error: argument --cfg-options: '
                    f"{option!r} is not of the form key=value", work=work)
    assert res.stderr.startswith('usage:')


def test_cfg_option_that_cannot_be_applied(tmp_path):
    work = str(tmp_path / 'work')
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
               '--cfg-options', 'train_cfg.max_iters.foo=1'])
    _assert_refused(res, 'tools/train.py: error: --cfg-options train_cfg.max_iters.foo=1 '
                    'cannot be applied to config', 'mask-rcnn_smlpnet-mini',
                    'max_iters is a dict in the child config', work=work)


@pytest.mark.parametrize('content,words', [
    (json.dumps({'images': [], 'annotations': [], 'categories': []}),
     ["would give an empty dataset: its 'images' list is empty",
      "its 'categories' list is empty"]),
    ('', ['is empty (0 bytes)']),
])
def test_empty_annotation_file(toy_coco, tmp_path, content, words):
    empty = tmp_path / 'empty.json'
    empty.write_text(content)
    work = str(tmp_path / 'work')
    res = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
               '--cfg-options'] + overrides(toy_coco) +
              [f'train_dataloader.dataset.ann_file={empty}'])
    _assert_refused(res, 'tools/train.py: error: train_dataloader.dataset.ann_file',
                    str(empty), *words, work=work)
