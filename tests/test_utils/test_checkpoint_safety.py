"""No code execution from a checkpoint, whatever torch's default or the
environment says: a pickle that would run a command is refused, naming the global
it needs, by every loading path of a process that imported mmsmlp (mmsmlp's
reader, mmengine's load_checkpoint, init_cfg Pretrained, a Runner's load_from and
resume, URLs, the tools and converters); checkpoints written by mmengine's stock
CheckpointHook (HistoryBuffers and numpy values in the message hub) load and
resume.

Run as a script (``python test_checkpoint_safety.py WORK_DIR CKPT...``), the
module tries every loading path on each CKPT and prints the outcomes as one JSON
line: the tests run it in a subprocess with TORCH_FORCE_(NO_)WEIGHTS_ONLY_LOAD set,
as a user would.
"""
import ast
import builtins
import functools
import http.server
import importlib.util
import json
import os
import os.path as osp
import pickle
import re
import shutil
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import mmsmlp  # noqa: F401  (routes mmengine's checkpoint loading)
from mmsmlp.utils import CheckpointError, read_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET = osp.join(ROOT, 'configs', 'toy', 'mask-rcnn_smlpnet-mini_fpn_toy-coco.py')
REFUSED = 'refused for safety'
ARCH = dict(embed_dims=8, depths=[1, 1, 1, 1])


# ------------------------------------------------------------------ payloads
class Call:
    """Pickles as ``fn(*args)``; ``fn`` may itself be a Call (a chain)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __call__(self, *args):  # the pickler wants a callable; never called here
        raise AssertionError('not meant to be called')

    def __reduce__(self):
        return self.fn, self.args


def _getattr_chain(start: str, marker):
    """getattr steps from HistoryBuffer to os.system, as a pickle can write them:
    HistoryBuffer.<start>.__globals__['warnings'].sys.modules['os'].system."""
    glob = Call(getattr, Call(getattr, HistoryBuffer, start), '__globals__')
    warnings_module = Call(Call(getattr, glob, 'get'), 'warnings')
    modules = Call(getattr, Call(getattr, warnings_module, 'sys'), 'modules')
    system = Call(getattr, Call(Call(getattr, modules, 'get'), 'os'), 'system')
    return Call(system, f'touch {marker}')


PAYLOADS = {
    # payload -> (object that runs `touch marker` when unpickled, global named)
    'os.system': (lambda m: Call(os.system, f'touch {m}'), r'(posix|nt)\.system'),
    'subprocess': (lambda m: Call(subprocess.call, ['touch', str(m)]),
                   r'(subprocess|commands)\.call'),  # protocol 2 writes Python 2 names
    'builtins.exec': (lambda m: Call(builtins.exec, f'open({str(m)!r}, "w").close()'),
                      r'builtin\w*\.exec'),
    'getattr-chain': (lambda m: _getattr_chain('__init__', m), r'getattr'),
    'getattr-after-mean': (lambda m: _getattr_chain('mean', m), r'getattr'),
}


def write_payload(folder, kind):
    """A checkpoint (torch.save) whose meta runs ``touch marker`` on unpickling."""
    marker = osp.join(folder, f'PWNED-{kind}')
    path = osp.join(folder, f'evil-{kind}.pth')
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': PAYLOADS[kind][0](marker)},
               path)
    return path, marker


@pytest.fixture(params=sorted(PAYLOADS))
def malicious(request, tmp_path):
    path, marker = write_payload(str(tmp_path), request.param)
    yield path, marker, PAYLOADS[request.param][1]
    assert not osp.exists(marker), 'the payload ran'


@pytest.mark.parametrize('kind', sorted(PAYLOADS))
def test_the_payloads_run_under_a_plain_unpickler(tmp_path, kind):
    """The control: torch.load(weights_only=False) runs each payload."""
    path, marker = write_payload(str(tmp_path), kind)
    torch.load(path, weights_only=False)
    assert osp.exists(marker)


def _refused(err, path, global_pattern):
    msg = str(err)
    assert REFUSED in msg and path in msg, msg
    assert re.search(global_pattern, msg), msg


def test_read_checkpoint_refuses(malicious):
    path, _, named = malicious
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    _refused(err.value, path, named)


def test_mmengine_load_checkpoint_refuses(malicious):
    from mmengine.runner import load_checkpoint
    path, _, named = malicious
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(nn.Linear(1, 1), path, map_location='cpu')
    _refused(err.value, path, named)


def test_init_cfg_pretrained_refuses(malicious):
    from mmsmlp.models import SMLPNet
    path, _, named = malicious
    model = SMLPNet(arch=ARCH, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError) as err:
        model.init_weights()
    _refused(err.value, path, named)


# --------------------------------------------------- a toy mmengine Runner
class ToyClassifier(BaseModel):
    """A tiny SMLPNet with a linear head and an MSE loss."""

    def __init__(self):
        super().__init__()
        from mmsmlp.models import SMLPNet
        self.backbone = SMLPNet(arch=ARCH, out_indices=(3, ))
        self.head = nn.Linear(self.backbone.num_features[-1], 1)

    def forward(self, inputs, target=None, mode='tensor'):
        out = self.head(self.backbone(inputs)[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=F.mse_loss(out, target))
        return out


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(3, 32, 32, generator=g),
                    target=torch.tensor([float(i % 2)]))


def toy_runner(work_dir, iters, load_from=None, resume=False, hooks=()):
    """An mmengine Runner as the stock tools build one: mmengine's own
    CheckpointHook (every 2 iterations), no mmsmlp hook unless given."""
    from mmengine.runner import Runner
    return Runner(
        model=ToyClassifier(), work_dir=str(work_dir),
        experiment_name=f'toy-{uuid.uuid4().hex}',  # its own message hub
        train_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2,
                                           by_epoch=False)),
        custom_hooks=list(hooks), load_from=load_from, resume=resume,
        randomness=dict(seed=0), log_level='WARNING')


def test_runner_load_from_resume_refuses(malicious, tmp_path):
    path, _, named = malicious
    runner = toy_runner(tmp_path / 'work', iters=2, load_from=path, resume=True)
    with pytest.raises(CheckpointError) as err:
        runner.train()
    _refused(err.value, path, named)


# ------------------------------------------ the same with torch's variables
def _try_every_path(path, work_dir):
    """{path name: 'LOADED' or the error} for each way a checkpoint is read."""
    from mmengine.runner import load_checkpoint

    from mmsmlp.models import SMLPNet
    attempts = {
        'read_checkpoint': lambda: read_checkpoint(path),
        'load_checkpoint': lambda: load_checkpoint(nn.Linear(1, 1), path),
        'init_cfg': lambda: SMLPNet(arch=ARCH, init_cfg=dict(
            type='Pretrained', checkpoint=path)).init_weights(),
        'runner_resume': lambda: toy_runner(
            osp.join(work_dir, 'resume'), 2, load_from=path, resume=True).train(),
    }
    results = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            results[name] = 'LOADED'
        except Exception as err:  # noqa: B902  reported to the test
            results[name] = f'{type(err).__name__}: {err}'
    return results


@pytest.mark.parametrize('variable', ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD',
                                      'TORCH_FORCE_WEIGHTS_ONLY_LOAD'])
def test_every_path_refuses_whatever_torch_variables_say(tmp_path, variable):
    kinds = ('os.system', 'getattr-chain')
    written = {kind: write_payload(str(tmp_path), kind) for kind in kinds}
    env = dict(os.environ, OMP_NUM_THREADS='1', **{variable: '1'})
    res = subprocess.run(
        [sys.executable, __file__, str(tmp_path)] + [p for p, _ in written.values()],
        env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    for kind, (path, marker) in written.items():
        assert set(results[path]) == {'read_checkpoint', 'load_checkpoint',
                                      'init_cfg', 'runner_resume'}
        for name, outcome in results[path].items():
            assert outcome.startswith('CheckpointError') and REFUSED in outcome, \
                (kind, name, outcome)
            assert path in outcome and 'global' in outcome, (kind, name, outcome)
            if variable == 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD':  # mmsmlp's reader
                assert re.search(PAYLOADS[kind][1], outcome), (kind, name, outcome)
        assert not osp.exists(marker), f'the {kind} payload ran'


def test_both_variables_set_is_an_error_not_a_load(tmp_path, monkeypatch):
    path, marker = write_payload(str(tmp_path), 'os.system')
    monkeypatch.setenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', '1')
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', 'true')
    with pytest.raises(CheckpointError, match='both.*unset one'):
        read_checkpoint(path)
    assert not osp.exists(marker)


# ------------------------------------------------- stock mmengine checkpoints
@pytest.fixture(scope='module')
def stock(tmp_path_factory):
    """A 4-iteration toy run saved by mmengine's CheckpointHook alone, as
    mmdet / mmseg / mmpretrain tools/train.py save."""
    work = tmp_path_factory.mktemp('stock')
    runner = toy_runner(work, iters=4)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0].copy()
    weights = {k: v.clone() for k, v in runner.model.state_dict().items()}
    return str(work / 'iter_4.pth'), losses, weights


def test_stock_checkpoint_needs_more_than_torch_weights_only(stock):
    """What makes it hard: its pickle holds HistoryBuffers, numpy arrays and
    scalars, and getattr(HistoryBuffer, 'mean'); torch's safe loader refuses it."""
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        torch.load(stock[0], weights_only=True)


def test_stock_checkpoint_is_read_with_its_message_hub(stock):
    path, losses, weights = stock
    ckpt = read_checkpoint(path)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert type(buf) is HistoryBuffer
    np.testing.assert_array_equal(buf.data[0], losses)
    assert buf.mean() == pytest.approx(float(np.mean(losses)))
    assert isinstance(ckpt['message_hub']['runtime_info']['eta'], np.floating)
    assert ckpt['meta']['iter'] == 4
    for k, v in weights.items():
        torch.testing.assert_close(ckpt['state_dict'][k], v, rtol=0, atol=0)
    # the statistics methods of every HistoryBuffer are mmengine's own
    assert HistoryBuffer([1, 3], [1, 1]).statistics('mean') == 2


@pytest.mark.parametrize('variable', [None, 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'])
def test_stock_checkpoint_loads_with_load_from(stock, tmp_path, monkeypatch,
                                               variable):
    path, _, weights = stock
    if variable:
        monkeypatch.setenv(variable, '1')
    runner = toy_runner(tmp_path / 'ft', iters=4, load_from=path)
    runner.load_or_resume()
    assert runner.iter == 0  # fine-tuning starts anew from the weights
    for k, v in runner.model.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0, msg=k)


def test_torch_weights_only_variable_is_honoured_and_explained(stock, monkeypatch):
    """TORCH_FORCE_WEIGHTS_ONLY_LOAD=1: torch's own loader reads the file, and
    refuses the message hub; the error says how to read it."""
    monkeypatch.setenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', '1')
    with pytest.raises(CheckpointError, match=r"HistoryBuffer|getattr") as err:
        read_checkpoint(stock[0])
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD=1 is set' in str(err.value)
    assert stock[0] in str(err.value)


def test_stock_checkpoint_resumes(stock, tmp_path):
    path, losses, _ = stock
    runner = toy_runner(tmp_path / 'resumed', iters=6, load_from=path, resume=True)
    runner.train()
    assert runner.iter == 6
    history = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(history) == 6  # the 4 losses of the checkpoint, then 2 new ones
    np.testing.assert_array_equal(history[:4], losses)


def test_weights_only_hook_checkpoint_resumes(tmp_path):
    """mmsmlp's WeightsOnlyCheckpointHook saves plain data (plain
    torch.load(weights_only=True) reads it); resuming through mmsmlp's reader
    rebuilds the message hub."""
    from mmsmlp.engine import WeightsOnlyCheckpointHook
    first = toy_runner(tmp_path / 'w', iters=2, hooks=[WeightsOnlyCheckpointHook()])
    first.train()
    losses = first.message_hub.get_scalar('train/loss').data[0].copy()
    path = str(tmp_path / 'w' / 'iter_2.pth')
    plain = torch.load(path, map_location='cpu', weights_only=True)
    assert isinstance(plain['message_hub']['log_scalars']['train/loss'], dict)
    runner = toy_runner(tmp_path / 'w', iters=4, load_from=path, resume=True,
                        hooks=[WeightsOnlyCheckpointHook()])
    runner.train()
    history = runner.message_hub.get_scalar('train/loss')
    assert type(history) is HistoryBuffer and runner.iter == 4
    np.testing.assert_array_equal(history.data[0][:2], losses)


# --------------------------------------------------------------------- URLs
@pytest.fixture
def http_folder(tmp_path, monkeypatch):
    """A local HTTP server of tmp_path/'www' and an empty torch hub cache."""
    www = tmp_path / 'www'
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(www))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv('NO_PROXY', '127.0.0.1')
    monkeypatch.setenv('no_proxy', '127.0.0.1')
    hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    yield www, f'http://127.0.0.1:{server.server_address[1]}'
    torch.hub.set_dir(hub)
    server.shutdown()
    server.server_close()


def test_urls_are_read_by_the_same_reader(http_folder, tmp_path, stock,
                                          monkeypatch):
    from mmengine.runner import load_checkpoint
    from mmengine.runner import checkpoint as mmengine_checkpoint
    www, url = http_folder
    evil, marker = write_payload(str(www), 'os.system')
    with pytest.raises(CheckpointError, match=REFUSED + r".*'(posix|nt)\.system'"):
        load_checkpoint(nn.Linear(1, 1), f'{url}/{osp.basename(evil)}')
    # the model-zoo names resolve to URLs, read the same way
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models',
                        lambda: {'evil': f'{url}/{osp.basename(evil)}'})
    with pytest.raises(CheckpointError, match=REFUSED):
        load_checkpoint(nn.Linear(1, 1), 'torchvision://evil')
    assert not osp.exists(marker)
    with pytest.raises(CheckpointError, match="no model 'nothing' under "
                       'torchvision://'):
        load_checkpoint(nn.Linear(1, 1), 'torchvision://nothing')
    with pytest.raises(CheckpointError, match='does not name a file'):
        load_checkpoint(nn.Linear(1, 1), f'{url}/')
    # a stock checkpoint is downloaded once into the hub cache and loads
    shutil.copy(stock[0], www / 'stock.pth')
    model = ToyClassifier()
    load_checkpoint(model, f'{url}/stock.pth', map_location='cpu')
    assert osp.isfile(osp.join(torch.hub.get_dir(), 'checkpoints', 'stock.pth'))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, stock[2][k], rtol=0, atol=0, msg=k)
    # mmcls:// keeps the backbone, as mmengine's loader does
    from mmsmlp.models import SMLPNet
    monkeypatch.setattr(mmengine_checkpoint, 'get_mmcls_models',
                        lambda: {'toy': f'{url}/stock.pth'})
    backbone = SMLPNet(arch=ARCH, out_indices=(3, ))
    load_checkpoint(backbone, 'mmcls://toy', map_location='cpu', strict=True)
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(v, stock[2][f'backbone.{k}'], rtol=0, atol=0)


# -------------------------------------------------------- tools, converters
def test_auto_resume_skips_it(tmp_path):
    from mmsmlp.engine.launch import latest_loadable_checkpoint
    path, marker = write_payload(str(tmp_path), 'os.system')
    work = tmp_path / 'work'
    work.mkdir()
    os.replace(path, work / 'iter_9.pth')
    (work / 'last_checkpoint').write_text(str(work / 'iter_9.pth'))
    assert latest_loadable_checkpoint(str(work)) is None
    assert not osp.exists(marker)


@pytest.fixture(scope='module')
def toy_coco(tmp_path_factory):
    from mmsmlp.datasets.toy_data import make_toy_coco
    root = str(tmp_path_factory.mktemp('data') / 'toy_coco')
    make_toy_coco(root, num_train=2, num_val=1)
    return root


def _opts(root):
    return ['--cfg-options'] + [f'{s}_dataloader.dataset.data_root={root}'
                                for s in ('train', 'val', 'test')]


@pytest.mark.parametrize('tool', ['train-resume', 'test-load'])
def test_tools_refuse(toy_coco, tmp_path, tool):
    path, marker = write_payload(str(tmp_path), 'os.system')
    work = str(tmp_path / 'w')
    if tool == 'train-resume':
        cmd = ['tools/train.py', DET, '--resume', path]
    else:
        cmd = ['tools/test.py', DET, path]
    res = subprocess.run([sys.executable] + cmd + ['--work-dir', work] + _opts(toy_coco),
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert REFUSED in last and osp.basename(path) in last, last
    assert not osp.exists(work)
    assert not osp.exists(marker)


@pytest.mark.parametrize('tool', ['smlp2mmsmlp', 'timm_resmlp2mmsmlp'])
def test_converters_refuse(tmp_path, tool, capsys):
    path, marker = write_payload(str(tmp_path), 'getattr-chain')
    spec = importlib.util.spec_from_file_location(
        tool, osp.join(ROOT, 'tools', 'model_converters', f'{tool}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rc = module.main([path, str(tmp_path / 'out.pth')])
    assert rc != 0
    err = capsys.readouterr().err
    assert REFUSED in err and 'getattr' in err
    assert not (tmp_path / 'out.pth').exists()
    assert not osp.exists(marker)


def test_the_project_reads_checkpoints_only_through_its_reader():
    """torch.load is called only in mmsmlp/utils/checkpoint.py, and there with
    weights_only=False only together with the restricted pickle module."""
    calls = []
    for folder in ('mmsmlp', 'tools', 'configs'):
        for dirpath, _, files in os.walk(osp.join(ROOT, folder)):
            for f in files:
                if not f.endswith('.py'):
                    continue
                path = osp.join(dirpath, f)
                with open(path, encoding='utf-8') as src:
                    tree = ast.parse(src.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Call) and isinstance(
                            node.func, ast.Attribute) and node.func.attr == 'load' \
                            and isinstance(node.func.value, ast.Name) \
                            and node.func.value.id == 'torch':
                        calls.append((osp.relpath(path, ROOT), node))
    assert calls and {p for p, _ in calls} == {'mmsmlp/utils/checkpoint.py'}
    for _, node in calls:
        kw = {k.arg: k.value for k in node.keywords}
        assert isinstance(kw.get('weights_only'), ast.Constant)
        if kw['weights_only'].value is not True:
            assert isinstance(kw.get('pickle_module'), ast.Name) \
                and kw['pickle_module'].id == 'safe_unpickler'


if __name__ == '__main__':  # WORK_DIR CKPT...
    print(json.dumps({path: _try_every_path(path, sys.argv[1])
                      for path in sys.argv[2:]}))
