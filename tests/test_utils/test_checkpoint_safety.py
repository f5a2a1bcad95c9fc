"""No code execution from a checkpoint: a pickle that would run a command when
loaded is refused, with a clear message, by every loading path of the project."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from mmsmlp.datasets.toy_data import make_toy_coco
from mmsmlp.utils import CheckpointError, read_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET = osp.join(ROOT, 'configs', 'toy', 'mask-rcnn_smlpnet-mini_fpn_toy-coco.py')
REFUSED = 'refused for safety'


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture
def malicious(tmp_path):
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': Payload(marker)}, path)
    yield str(path), marker
    assert not marker.exists(), 'the payload ran'


def test_read_checkpoint_refuses(malicious):
    path, _ = malicious
    with pytest.raises(CheckpointError, match=REFUSED):
        read_checkpoint(path)


def test_init_cfg_refuses(malicious):
    from mmsmlp.models import SMLPNet
    path, _ = malicious
    model = SMLPNet(arch=dict(embed_dims=8, depths=[1, 1, 1, 1]),
                    init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match=REFUSED + '.*evil.pth|evil.pth.*' + REFUSED):
        model.init_weights()


def test_mmengine_load_checkpoint_refuses(malicious):
    from mmengine.runner import load_checkpoint
    path, _ = malicious
    with pytest.raises(Exception, match='Weights only load failed'):
        load_checkpoint(torch.nn.Linear(1, 1), path)


def test_auto_resume_skips_it(malicious, tmp_path):
    from mmsmlp.engine.launch import latest_loadable_checkpoint
    path, _ = malicious
    work = tmp_path / 'work'
    work.mkdir()
    os.replace(path, work / 'iter_9.pth')
    (work / 'last_checkpoint').write_text(str(work / 'iter_9.pth'))
    assert latest_loadable_checkpoint(str(work)) is None


@pytest.fixture(scope='module')
def toy_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'toy_coco')
    make_toy_coco(root, num_train=2, num_val=1)
    return root


def _opts(root):
    return ['--cfg-options'] + [f'{s}_dataloader.dataset.data_root={root}'
                                for s in ('train', 'val', 'test')]


@pytest.mark.parametrize('tool', ['train-resume', 'test-load'])
def test_tools_refuse(malicious, toy_coco, tmp_path, tool):
    path, _ = malicious
    work = str(tmp_path / 'w')
    if tool == 'train-resume':
        cmd = ['tools/train.py', DET, '--resume', path]
    else:
        cmd = ['tools/test.py', DET, path]
    res = subprocess.run([sys.executable] + cmd + ['--work-dir', work] + _opts(toy_coco),
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert REFUSED in last and 'evil.pth' in last, last
    assert not osp.exists(work)


@pytest.mark.parametrize('tool', ['smlp2mmsmlp', 'timm_resmlp2mmsmlp'])
def test_converters_refuse(malicious, tmp_path, tool, capsys):
    path, _ = malicious
    spec = importlib.util.spec_from_file_location(
        tool, osp.join(ROOT, 'tools', 'model_converters', f'{tool}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rc = module.main([path, str(tmp_path / 'out.pth')])
    assert rc != 0
    assert REFUSED in capsys.readouterr().err
    assert not (tmp_path / 'out.pth').exists()


def test_no_unsafe_torch_load_in_the_project():
    """Nowhere does the project call torch.load(..., weights_only=False)."""
    unsafe = re.compile(r'weights_only\s*=\s*False')
    offenders = []
    for folder in ('mmsmlp', 'tools', 'configs'):
        for dirpath, _, files in os.walk(osp.join(ROOT, folder)):
            for f in files:
                if f.endswith('.py'):
                    text = open(osp.join(dirpath, f), encoding='utf-8').read()
                    code = re.sub(r'("""|\'\'\').*?\1', '', text, flags=re.S)  # docstrings
                    code = re.sub(r'#.*', '', code)
                    if unsafe.search(code):
                        offenders.append(osp.join(dirpath, f))
    assert not offenders
