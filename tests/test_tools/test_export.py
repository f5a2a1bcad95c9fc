"""tools/deployment/export.py as a user runs it, on the toy configs of the three
codebases (checkpoints of freshly built models): a classifier and a detector's
backbone + neck with a dynamic size, a segmentor (UperNet, whose pyramid pooling
has no dynamic ONNX form) for fixed sizes, a torch.export program, and bad inputs
that end in one clear line and exit code 1."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmsmlp.datasets.toy_data import make_toy_imagenet

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = 'tools/deployment/export.py'
CLS = osp.join(ROOT, 'configs', 'toy', 'smlpnet-mini_toy-imagenet.py')
SEG = osp.join(ROOT, 'configs', 'toy', 'upernet_s2mlp-mini_toy-ade20k.py')
DET = osp.join(ROOT, 'configs', 'toy', 'mask-rcnn_resmlp-mini_fpn_toy-coco.py')
ERROR = f'{TOOL}: error: '


def run(*args):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True,
                          text=True, timeout=900, cwd=ROOT, env=env)


def error_lines(res):
    """The tool's error lines, and that nothing crashed with a traceback."""
    assert 'Traceback' not in res.stderr, res.stderr[-3000:]
    return [ln for ln in res.stderr.splitlines() if ln.startswith(ERROR)]


def build(config):
    from mmsmlp.utils.complexity import build_from_config
    model, _ = build_from_config(config)
    return model


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A checkpoint of a freshly built model of each config (random BatchNorm
    statistics, so that the inference re-parameterisation has work to do)."""
    from mmengine.runner import save_checkpoint
    folder = tmp_path_factory.mktemp('ckpt')
    paths = {}
    torch.manual_seed(0)
    for config in (CLS, SEG, DET):
        model = build(config)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, .2)
                m.running_var.uniform_(.5, 1.5)
        paths[config] = str(folder / (osp.basename(config)[:-3] + '.pth'))
        save_checkpoint({'meta': {}, 'state_dict': model.state_dict()},
                        paths[config])
    return paths


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'toy_imagenet')
    make_toy_imagenet(root, num_train_per_class=1, num_val_per_class=1, seed=0,
                      min_size=96, max_size=160)
    return sorted(glob.glob(osp.join(root, 'val', '*', '*')))[0]


def loaded(config, checkpoint):
    from mmengine.runner import load_checkpoint
    model = build(config)
    load_checkpoint(model, checkpoint, map_location='cpu')
    model.eval()
    model.backbone.switch_to_deploy()  # as the tool does
    return model


def test_classifier_with_dynamic_size_and_image(checkpoints, image, tmp_path):
    out = str(tmp_path / 'cls.onnx')
    res = run(CLS, checkpoints[CLS], '--out', out, '--dynamic', '--image', image)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert 'mmengine - INFO - exporting the mmpretrain model for any batch, height ' \
        'and width' in log
    for what in ('example input (2, 3, 224, 224)', 'other size input',
                 'image input (1, 3, '):
        assert f'parity with eager, {what}' in log
    assert 'max abs' in log and 'relative' in log
    # the file is the whole classifier: logits at any size, as eager computes them
    from mmsmlp.deployment import OnnxRunner, check_parity
    from mmsmlp.utils.complexity import TensorForward
    model = TensorForward(loaded(CLS, checkpoints[CLS]), 'mmpretrain')
    for size in [(96, 160), (257, 201)]:
        stats = check_parity(model, OnnxRunner(out), torch.randn(1, 3, *size), 1e-4)
        assert stats[0]['shape'] == (1, 4)  # four toy classes


def test_detector_backbone_and_neck_with_dynamic_size(checkpoints, tmp_path):
    out = str(tmp_path / 'det.onnx')
    res = run(DET, checkpoints[DET], '--out', out, '--dynamic', '--shape', '256', '320')
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert 'mmdet: exporting backbone + neck (extract_feat)' in log
    assert 'parity with eager, other size input (1, 3, 177, 245)' in log
    import onnx
    assert len(onnx.load(out).graph.output) == 5  # the FPN levels


def test_segmentor_exports_for_fixed_sizes_only(checkpoints, image, tmp_path):
    # UperNet's pyramid pooling (adaptive average pooling) has no dynamic form
    # in the TorchScript-based exporter: one clear line
    res = run(SEG, checkpoints[SEG], '--out', str(tmp_path / 'dyn.onnx'),
              '--dynamic')
    assert res.returncode == 1
    lines = error_lines(res)
    assert len(lines) == 1 and 'refused the model' in lines[0] \
        and 'adaptive_avg_pool2d' in lines[0], res.stderr[-3000:]

    # fixed sizes: one graph each (sides multiples of 192, which the pooling to
    # 1, 2, 3 and 6 cells divides at stride 32), checked on the image
    out = str(tmp_path / 'seg.onnx')
    res = run(SEG, checkpoints[SEG], '--out', out, '--shape', '192', '192',
              '--shape', '384', '576', '--image', image)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert 'parity with eager, image input (1, 3, 192, 192): output 0 ' \
        '(1, 5, 48, 48)' in log
    assert 'parity with eager, image input (1, 3, 384, 576)' in log
    from mmsmlp.deployment import ExportError, OnnxRunner
    small = OnnxRunner(str(tmp_path / 'seg_192x192.onnx'))
    assert small(torch.randn(1, 3, 192, 192))[0].shape == (1, 5, 48, 48)
    with pytest.raises(ExportError, match='onnxruntime fails'):
        small(torch.randn(1, 3, 384, 576))  # another size: an error, not a guess
    assert osp.isfile(str(tmp_path / 'seg_384x576.onnx'))


HAS_DIM_DYNAMIC = hasattr(getattr(torch.export, 'Dim', None), 'DYNAMIC')


def test_torch_export_program(checkpoints, tmp_path):
    out = str(tmp_path / 'cls.pt2')
    res = run(CLS, checkpoints[CLS], '--out', out, '--format', 'export', '--dynamic')
    if HAS_DIM_DYNAMIC:
        log = res.stdout + res.stderr
        assert res.returncode == 0, log[-4000:]
        assert 'parity with eager, other size input' in log
        program = torch.export.load(out)
        assert program.module()(torch.randn(1, 3, 100, 140)).shape == (1, 4)
    else:  # torch 2.1's prototype: a clear refusal
        assert res.returncode == 1
        lines = error_lines(res)
        assert len(lines) == 1 and 'refused the model with a dynamic size' in lines[0]
        res = run(CLS, checkpoints[CLS], '--out', out, '--format', 'export')
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert 'parity with eager, example input (1, 3, 224, 224)' in res.stdout


@pytest.mark.parametrize('case', ['missing checkpoint', 'unknown config', 'shape',
                                  'two shapes', 'image', 'wrong checkpoint'])
def test_bad_inputs_give_one_clear_line(checkpoints, tmp_path, case):
    args, expected = {
        'missing checkpoint': ([CLS, str(tmp_path / 'none.pth')],
                               "checkpoint '.*none.pth' does not exist"),
        'unknown config': (['configs/toy/nope.py', checkpoints[CLS]],
                           "config file 'configs/toy/nope.py' does not exist"),
        'shape': ([CLS, checkpoints[CLS], '--shape', '16', '224'],
                  'at least 32'),
        'two shapes': ([CLS, checkpoints[CLS], '--dynamic', '--shape', '224', '224',
                        '--shape', '256', '256'], 'at most one --shape'),
        'image': ([CLS, checkpoints[CLS], '--image', str(tmp_path / 'no.png')],
                  "--image '.*no.png' does not exist"),
        'wrong checkpoint': ([SEG, checkpoints[CLS]], 'does not fit the model'),
    }[case]
    res = run(*args, '--out', str(tmp_path / 'x.onnx'))
    assert res.returncode == 1
    lines = error_lines(res)
    assert len(lines) == 1, res.stderr[-3000:]
    import re
    assert re.search(expected, lines[0]), lines[0]
    assert not osp.exists(str(tmp_path / 'x.onnx'))
