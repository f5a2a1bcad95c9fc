"""AtomicCheckpointHook: the same checkpoints as mmengine's CheckpointHook for every
argument, written atomically, with old checkpoints removed only once the new one is
complete. Runs a tiny mmengine Runner in this process."""
import os
import os.path as osp
import stat
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import CheckpointHook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from mmsmlp.engine.hooks import (AtomicCheckpointHook, AtomicLocalBackend,
                                 partial_files, write_atomically)

ITERS_PER_EPOCH = 2


class TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out.squeeze(1) - torch.stack(labels)) ** 2).mean())
        return out


class ScriptedAccuracy(BaseMetric):
    """An 'acc' that follows a script, one value per evaluation, so that the best
    checkpoint changes at known epochs."""
    scores = (0.1, 0.5, 0.3, 0.7)

    def __init__(self):
        super().__init__()
        self.calls = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        score = self.scores[self.calls % len(self.scores)]
        self.calls += 1
        return dict(acc=score)


def _loader():
    data = [dict(inputs=torch.full((2, ), float(i)), labels=torch.tensor(float(i)))
            for i in range(2 * ITERS_PER_EPOCH)]
    return DataLoader(data, batch_size=2, shuffle=False,
                      collate_fn=lambda b: dict(inputs=[d['inputs'] for d in b],
                                                labels=[d['labels'] for d in b]))


def train(work_dir, epochs=4, validate=False, **hook):
    """Train TinyModel for ``epochs`` with the checkpoint hook config ``hook``;
    returns the runner."""
    val = dict(val_dataloader=_loader(), val_cfg=dict(),
               val_evaluator=Evaluator(ScriptedAccuracy())) if validate else {}
    torch.manual_seed(0)  # the same initial weights in every run
    runner = Runner(
        model=TinyModel(), work_dir=str(work_dir), train_dataloader=_loader(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=1),
        default_hooks=dict(checkpoint=hook, logger=dict(type='LoggerHook', interval=100)),
        experiment_name=f'atomic_ckpt_{uuid.uuid4().hex}', **val)
    runner.train()
    return runner


def _files(folder):
    """The checkpoints, the pointer and anything else the hook may leave (not the
    logs and config dump of the Runner)."""
    return sorted(f for f in os.listdir(folder)
                  if not osp.isdir(osp.join(folder, f)) and not f.endswith('.py'))


def _pointer(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return osp.basename(f.read().strip())


@pytest.mark.parametrize('args', [
    dict(interval=1, max_keep_ckpts=1),
    dict(interval=1, max_keep_ckpts=2, save_best='acc'),
    dict(interval=2, by_epoch=False, max_keep_ckpts=2, filename_tmpl='step{}.pth'),
    dict(interval=3, save_last=True, save_optimizer=False, save_begin=1),
], ids=['keep1', 'keep2-best', 'by-iter-tmpl', 'save-last-begin'])
def test_same_checkpoints_as_mmengines_hook(tmp_path, args):
    validate = 'save_best' in args
    train(tmp_path / 'stock', validate=validate, type='CheckpointHook', **args)
    atomic = train(tmp_path / 'atomic', validate=validate, type='AtomicCheckpointHook',
                   **args)
    hook, = [h for h in atomic.hooks if isinstance(h, CheckpointHook)]
    assert type(hook) is AtomicCheckpointHook
    stock_files, atomic_files = _files(tmp_path / 'stock'), _files(tmp_path / 'atomic')
    assert atomic_files == stock_files
    assert any(f.endswith('.pth') for f in atomic_files)
    assert _pointer(tmp_path / 'atomic') == _pointer(tmp_path / 'stock')
    if validate:  # scores 0.1, 0.5, 0.3, 0.7: the best moved to epoch 4, once only
        assert 'best_acc_epoch_4.pth' in atomic_files
        assert 'best_acc_epoch_2.pth' not in atomic_files
    for name in atomic_files:
        if name.endswith('.pth'):
            a = torch.load(tmp_path / 'atomic' / name, weights_only=False)
            s = torch.load(tmp_path / 'stock' / name, weights_only=False)
            assert a.keys() == s.keys()
            for k, v in s['state_dict'].items():
                torch.testing.assert_close(a['state_dict'][k], v, rtol=0, atol=0)


def test_out_dir_and_permissions(tmp_path):
    work, out = tmp_path / 'work', tmp_path / 'out'
    train(work, epochs=2, type='AtomicCheckpointHook', interval=1, out_dir=str(out))
    folder = out / 'work'  # out_dir / basename(work_dir), as mmengine does
    assert _files(folder) == ['epoch_1.pth', 'epoch_2.pth']
    assert _pointer(work) == 'epoch_2.pth'
    # the temporary file is created like open() creates files (umask applies)
    with open(tmp_path / 'plain', 'wb'):
        pass
    assert stat.S_IMODE(os.stat(folder / 'epoch_2.pth').st_mode) == \
        stat.S_IMODE(os.stat(tmp_path / 'plain').st_mode)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """With max_keep_ckpts=1 mmengine removes epoch_1.pth before it writes
    epoch_2.pth; here the save of epoch_2.pth fails just before its rename (as a
    run killed there would stop), and epoch_1.pth must still be there, complete."""
    real_replace = os.replace

    def fail_on_epoch_2(src, dst, *a, **k):
        if osp.basename(str(dst)) == 'epoch_2.pth':
            raise OSError('disk full (injected)')
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, 'replace', fail_on_epoch_2)
    with pytest.raises(OSError, match='injected'):
        train(tmp_path, epochs=3, type='AtomicCheckpointHook', interval=1,
              max_keep_ckpts=1)
    assert _files(tmp_path) == ['epoch_1.pth', 'last_checkpoint']
    assert _pointer(tmp_path) == 'epoch_1.pth'
    assert torch.load(tmp_path / 'epoch_1.pth', weights_only=False)['meta']['epoch'] == 1
    assert partial_files(str(tmp_path)) == []  # the failed write cleaned up


def test_stale_partial_files_are_removed_before_training(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / '.epoch_3.pth.4242-deadbeef.partial'
    stale.write_bytes(b'half a checkpoint')
    other = tmp_path / 'notes.partial'  # not one of ours: kept
    other.write_text('x')
    train(tmp_path, epochs=1, type='AtomicCheckpointHook', interval=1)
    assert not stale.exists() and other.exists()


def test_write_atomically_leaves_the_old_file_on_error(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pth'
    write_atomically(b'old', path)
    assert path.read_bytes() == b'old'

    def broken_fsync(fd):
        raise OSError('I/O error (injected)')

    monkeypatch.setattr(os, 'fsync', broken_fsync)
    with pytest.raises(OSError, match='injected'):
        write_atomically(b'new and longer', path)
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['ckpt.pth']


def test_backend_defers_removals_until_the_block_ends(tmp_path):
    backend = AtomicLocalBackend()
    a, b = tmp_path / 'a.pth', tmp_path / 'b.pth'
    for p in (a, b):
        backend.put(b'x', str(p))
    with backend.removals_deferred(keep=[str(b)]):
        backend.remove(str(a))
        backend.remove(str(b))
        assert a.exists() and b.exists()
    assert not a.exists() and b.exists()  # b is kept: the hook still refers to it
    with pytest.raises(RuntimeError):
        with backend.removals_deferred():
            backend.remove(str(b))
            raise RuntimeError('save failed')
    assert b.exists()  # nothing removed after a failed save


def test_launch_switches_mmengines_hook_only():
    from mmsmlp.engine.launch import use_atomic_checkpoints
    cfg = Config(dict(default_hooks=dict(
        checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2))))
    use_atomic_checkpoints(cfg)
    assert cfg.default_hooks.checkpoint == dict(type='AtomicCheckpointHook',
                                                interval=5, max_keep_ckpts=2)
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='MyCheckpointHook'))))
    use_atomic_checkpoints(cfg)
    assert cfg.default_hooks.checkpoint.type == 'MyCheckpointHook'
    cfg = Config(dict(default_hooks=dict(checkpoint=None)))
    use_atomic_checkpoints(cfg)  # no checkpoints: nothing to switch
    assert cfg.default_hooks.checkpoint is None
