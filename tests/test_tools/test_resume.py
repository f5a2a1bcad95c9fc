"""Killed runs and --resume, through tools/train.py in subprocesses on the toy sets:

* a run killed with SIGKILL and restarted with --resume ends with the same weights
  as an uninterrupted run (CPU, deterministic settings);
* kills at random moments and in the middle of a checkpoint write never lose the
  run: --resume continues from the last complete checkpoint;
* --resume with nothing to resume from stops with a clear error, writing nothing.
"""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from mmsmlp.datasets.toy_data import make_toy_coco, make_toy_imagenet

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'toy', 'mask-rcnn_smlpnet-mini_fpn_toy-coco.py')
CLS_CONFIG = osp.join(ROOT, 'configs', 'toy', 'smlpnet-mini_toy-imagenet.py')
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
    return train_command(CONFIG, root, work, opts, extra)


def train_command(config, root, work, opts, extra):
    """``tools/train.py config`` on the toy data at ``root``, in the main process."""
    for loader in ('train', 'val', 'test'):
        opts = opts + [f'{loader}_dataloader.dataset.data_root={root}',
                       f'{loader}_dataloader.num_workers=0',
                       f'{loader}_dataloader.persistent_workers=False']
    return [sys.executable, 'tools/train.py', config, '--work-dir', work, *extra,
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


# ---------------------------------------------------------------------------------
# Kills at random moments and during checkpoint writes (the toy classifier, whose
# config keeps one checkpoint: max_keep_ckpts=1)

EPOCHS = 12  # 4 iterations each (16 images, batch 4), a checkpoint after each
KILL_SEED = 20

# Imported by the trained config through custom_imports (test code only, never in
# the package). With FAULT_STALL_WRITE=<name>, the rename that completes the atomic
# write of checkpoint <name> first truncates the temporary file to half (the state
# a write killed half way leaves) and then waits to be killed: the kill lands while
# that checkpoint is being written, every time. RecordStartHook saves the position
# and weights the run starts training from (after resuming), for the test to check.
FAULT_INJECTION = textwrap.dedent("""
    import os
    import time

    import torch
    from mmengine.hooks import Hook
    from mmengine.model import is_model_wrapper

    from mmsmlp.registry import HOOKS

    MARKERS = os.environ['FAULT_MARKERS']
    STALL = os.environ.get('FAULT_STALL_WRITE')
    _rename = os.rename


    def _mark(name):
        open(os.path.join(MARKERS, name), 'w').close()


    if STALL:
        _replace = os.replace

        def _stalled_replace(src, dst, *args, **kwargs):
            if os.path.basename(os.fspath(dst)) == STALL:
                os.truncate(src, os.path.getsize(src) // 2)
                _mark('stalled')
                time.sleep(3600)
            return _replace(src, dst, *args, **kwargs)

        os.replace = _stalled_replace


    @HOOKS.register_module()
    class RecordStartHook(Hook):
        priority = 'LOWEST'

        def before_train(self, runner):
            model = runner.model
            if is_model_wrapper(model):
                model = model.module
            path = os.path.join(MARKERS, 'start.pth')
            torch.save(dict(epoch=runner.epoch, iter=runner.iter,
                            state_dict=model.state_dict()), path + '.tmp')
            _rename(path + '.tmp', path)
            _mark('started')
""")


@pytest.fixture(scope='module')
def toy_imagenet(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'toy_imagenet')
    make_toy_imagenet(root, num_train_per_class=4, num_val_per_class=1, seed=0,
                      min_size=64, max_size=96)
    return root


@pytest.fixture
def faulty_config(tmp_path):
    """The toy classifier config plus the fault-injection module and hook."""
    helpers = tmp_path / 'helpers'
    helpers.mkdir()
    (helpers / 'fault_injection.py').write_text(FAULT_INJECTION)
    config = helpers / 'faulty_toy_classifier.py'
    config.write_text(textwrap.dedent(f"""
        _base_ = [{CLS_CONFIG!r}]
        custom_imports = dict(imports=['mmsmlp', 'fault_injection'],
                              allow_failed_imports=False)
        custom_hooks = [dict(type='WeightsOnlyCheckpointHook'),
                        dict(type='RecordStartHook')]
    """))
    return str(config), str(helpers)


def cls_command(config, root, work, *extra):
    opts = [f'train_cfg.max_epochs={EPOCHS}', f'train_cfg.val_interval={EPOCHS + 1}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
            'train_dataloader.batch_size=4']
    return train_command(config, root, work, opts, extra)


def complete_checkpoints(work):
    """{epoch: path} of the checkpoints in ``work`` that load completely."""
    found = {}
    for name in os.listdir(work):
        if name.endswith('.pth'):
            try:
                ckpt = torch.load(osp.join(work, name), map_location='cpu',
                                  weights_only=True)
            except Exception:
                continue
            found[ckpt['meta']['epoch']] = osp.join(work, name)
    return found


def partial_writes(work):
    return sorted(f for f in os.listdir(work) if f.endswith('.partial'))


class Run:
    """tools/train.py in the background, its output in a file."""

    def __init__(self, cmd, env, log):
        self.log = log
        with open(log, 'w') as f:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f,
                                         stderr=subprocess.STDOUT)

    def output(self):
        with open(self.log) as f:
            return f.read()

    def wait_for(self, path, timeout=300):
        deadline = time.time() + timeout
        while not osp.exists(path):
            assert self.proc.poll() is None, \
                f'the run ended (rc {self.proc.returncode}) before {path}:\n' \
                + self.output()[-3000:]
            assert time.time() < deadline, f'no {path} after {timeout} s'
            time.sleep(0.02)

    def kill(self):
        assert self.proc.poll() is None, 'the run finished before it was killed'
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def complete_before_resume(work):
    """The weights of the complete checkpoints of ``work`` by epoch (read now: the
    resumed run removes them), and the epoch ``last_checkpoint`` names."""
    complete = complete_checkpoints(work)
    with open(osp.join(work, 'last_checkpoint')) as f:
        named = f.read().strip()
    return ({epoch: weights(path) for epoch, path in complete.items()},
            next((e for e, p in complete.items() if p == named), None))


def check_resumed_from_complete(markers, log, before):
    """The resumed run started from a complete checkpoint of ``before``: the newest,
    or the one last_checkpoint names (a run killed between writing a checkpoint and
    the pointer leaves the previous one named, and still there), with its exact
    weights; never from the start."""
    complete, named = before
    start = torch.load(osp.join(markers, 'start.pth'), map_location='cpu',
                       weights_only=True)
    epoch = start['epoch']
    assert epoch in complete, f'started at epoch {epoch}; complete: {sorted(complete)}'
    assert epoch in (max(complete), named), (epoch, sorted(complete), named)
    assert f'resumed epoch: {epoch}, iter: {start["iter"]}' in log
    assert start['iter'] == 4 * epoch
    saved = complete[epoch]
    assert saved.keys() == start['state_dict'].keys()
    for k, v in saved.items():
        torch.testing.assert_close(start['state_dict'][k], v, rtol=0, atol=0, msg=k)
    return epoch


def test_kills_at_random_moments_and_during_a_write_never_lose_the_run(
        toy_imagenet, faulty_config, tmp_path):
    config, helpers = faulty_config
    work, markers = str(tmp_path / 'work'), str(tmp_path / 'markers')
    os.makedirs(markers)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1',
               FAULT_MARKERS=markers,
               PYTHONPATH=os.pathsep.join([helpers, os.environ.get('PYTHONPATH', '')]))
    rng = random.Random(KILL_SEED)

    # 1. killed while epoch_2.pth is being written: mmengine would have removed
    # epoch_1.pth already (max_keep_ckpts=1) and left a truncated epoch_2.pth
    run = Run(cls_command(config, toy_imagenet, work),
              dict(env, FAULT_STALL_WRITE='epoch_2.pth'), str(tmp_path / 'run0.log'))
    run.wait_for(osp.join(markers, 'stalled'))
    run.kill()
    assert complete_checkpoints(work) == {1: osp.join(work, 'epoch_1.pth')}
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    assert len(partial_writes(work)) == 1  # the interrupted write, never a .pth

    # 2. resumed, and killed again at random moments (training, saving, removing)
    resumed_at = []
    for i, delay in enumerate(rng.uniform(0.0, 1.5) for _ in range(2)):
        before = complete_before_resume(work)
        os.remove(osp.join(markers, 'started'))
        run = Run(cls_command(config, toy_imagenet, work, '--resume'), env,
                  str(tmp_path / f'run{i + 1}.log'))
        run.wait_for(osp.join(markers, 'started'))
        time.sleep(delay)
        run.kill()
        resumed_at.append(check_resumed_from_complete(markers, run.output(), before))
    assert resumed_at[0] == 1
    assert 'unfinished checkpoint write' in open(tmp_path / 'run1.log').read()

    # 3. resumed to the end
    before = complete_before_resume(work)
    os.remove(osp.join(markers, 'started'))
    res = subprocess.run(cls_command(config, toy_imagenet, work, '--resume'), cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    check_resumed_from_complete(markers, log, before)
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == \
        [f'epoch_{EPOCHS}.pth']  # max_keep_ckpts=1 still holds
    assert partial_writes(work) == []
    assert list(complete_checkpoints(work)) == [EPOCHS]


# ---------------------------------------------------------------------------------
# Nothing to resume from: a clear error, exit code 1, nothing written


@pytest.mark.parametrize('case', ['missing-dir', 'truncated-only', 'config-resume'])
def test_nothing_to_resume_is_an_error(toy_imagenet, tmp_path, case):
    """(``--resume PATH`` with a bad file: tests/test_utils/test_checkpoint_safety.py)"""
    work = tmp_path / 'work'
    extra = ['--resume']
    if case != 'missing-dir':
        work.mkdir()
    if case == 'truncated-only':  # as mmengine's in-place writes leave them
        good = tmp_path / 'good.pth'
        torch.save({'state_dict': {'w': torch.ones(1000)}}, good)
        (work / 'epoch_3.pth').write_bytes(good.read_bytes()[:100])
        (work / 'last_checkpoint').write_text(str(work / 'epoch_3.pth'))
    if case == 'config-resume':  # a run killed during its first checkpoint write
        (work / '.epoch_1.pth.77-0a1b2c3d.partial').write_bytes(b'half')
        extra = []
    listing = sorted(os.listdir(work)) if work.exists() else None
    cmd = cls_command(CLS_CONFIG, toy_imagenet, str(work), *extra)
    if case == 'config-resume':
        cmd.append('resume=True')
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'Traceback' not in res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith('tools/train.py: error: ')
    expected = {
        'missing-dir': [f"--resume: work dir '{work}' does not exist",
                        'drop --resume'],
        'truncated-only': [f"--resume: work dir '{work}'", 'cannot be loaded',
                           "['epoch_3.pth']"],
        'config-resume': ['resume=True in the config (without load_from): work dir '
                          f"'{work}' holds no checkpoint, only unfinished writes",
                          '.epoch_1.pth.77-0a1b2c3d.partial', 'resume=False'],
    }[case]
    for words in expected:
        assert words in err, err
    assert (sorted(os.listdir(work)) if work.exists() else None) == listing
