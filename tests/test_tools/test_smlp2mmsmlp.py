"""tools/model_converters/smlp2mmsmlp.py: an official sMLPNet checkpoint, converted,
must give the same logits in mmpretrain; bad inputs must fail with clear messages.

The "official" model (mmsmlp.testing.OfficialSMLPNet) is written from the description
of the official code (key names, module structure and forward order); it is the
reference of the test.
"""
import importlib.util
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from mmsmlp.testing import OfficialSMLPNet

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'model_converters' / 'smlp2mmsmlp.py'

ARCH = dict(embed_dims=16, depths=[1, 2, 2, 1], mlp_ratio=3)
NUM_CLASSES = 7


def _load_tool():
    spec = importlib.util.spec_from_file_location('smlp2mmsmlp', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def randomise(model, seed):
    """Random parameters AND BatchNorm statistics, scaled to keep activations O(1),
    so that any wrong mapping changes the output."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                uniform(m.weight, 0.5, 1.5)
                normal(m.bias, 0.2)
            if isinstance(m, nn.BatchNorm2d):
                normal(m.running_mean, 0.2)
                uniform(m.running_var, 0.5, 2.0)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1, ),
                                                              generator=g)))
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                bound = (3. / fan_in)**0.5  # variance 1 / fan_in
                uniform(m.weight, -bound, bound)
                if m.bias is not None:
                    normal(m.bias, 0.2)
    return model.eval()


def official_model(seed, arch=ARCH):
    return randomise(
        OfficialSMLPNet(arch['embed_dims'], arch['depths'], arch['mlp_ratio'],
                        NUM_CLASSES), seed)


def mm_classifier(arch=ARCH):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmsmlp  # noqa: F401  (registers SMLPNet)
    init_default_scope('mmpretrain')
    last = len(arch['depths']) - 1
    model = MODELS.build(
        dict(type='ImageClassifier',
             backbone=dict(type='SMLPNet', arch=arch, out_indices=(last, )),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                       in_channels=arch['embed_dims'] * 2**last)))
    return model.eval()


def load_converted(path, arch=ARCH):
    from mmengine.runner import load_checkpoint
    model = mm_classifier(arch)
    load_checkpoint(model, str(path), map_location='cpu', strict=True)
    return model


@torch.no_grad()
def max_diff(official, ours, seed=0):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
    ref = official(x)
    out = ours(x, mode='tensor')
    assert out.shape == ref.shape == (2, NUM_CLASSES)
    return (out - ref).abs().max().item(), ref


def run_cli(*args, cwd=None):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')])
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def run_main(capsys, *args):
    """The CLI in-process (same code path as the script, without a new
    interpreter): returns (exit code, stdout, stderr)."""
    rc = tool.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# --------------------------------------------------------------------------------
# equivalence (one conversion of each kind, shared by the tests of this module)
# --------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """An official checkpoint {'model', 'model_ema'} with different weights, and
    the CLI run on it as a subprocess without and with --use-ema."""
    tmp = tmp_path_factory.mktemp('smlp')
    model, ema = official_model(seed=1), official_model(seed=2)
    src = tmp / 'official.pth'
    torch.save({'model': model.state_dict(), 'model_ema': ema.state_dict(),
                'epoch': 299}, src)
    runs = {}
    for name, extra in (('model', []), ('model_ema', ['--use-ema'])):
        dst = tmp / 'out' / name / 'converted.pth'  # parent folders do not exist
        proc = run_cli(src, dst, *extra)
        assert proc.returncode == 0, proc.stderr
        runs[name] = (dst, proc.stdout)
    return dict(src=src, model=model, ema=ema, runs=runs)


def test_converted_logits_match_official(converted):
    dst, stdout = converted['runs']['model']
    assert 'embed_dims=16, depths=[1, 2, 2, 1], mlp_ratio=3' in stdout
    assert 'token grids=[56, 28, 14, 7]' in stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'meta', 'state_dict'}
    assert ckpt['meta']['source_key'] == 'model'
    assert ckpt['meta']['arch'] == ARCH
    keys = list(ckpt['state_dict'])
    assert all(k.startswith(('backbone.', 'head.fc.')) for k in keys)
    assert len(keys) == len(converted['model'].state_dict())  # nothing dropped
    assert ckpt['state_dict']['backbone.stages.2.blocks.1.sparse_mlp.fuse.weight'] \
        .shape == (64, 192)

    diff, ref = max_diff(converted['model'], load_converted(dst))
    assert ref.abs().max() > 0.1  # logits of a meaningful size
    assert diff < 1e-5, diff


def test_training_step_matches_official(converted):
    """Train mode (batch statistics) and gradients: the fast blocks (fused sMLP
    node, in-place residuals) against the straightforward official structure.
    The official gradients, renamed by the converter like a state dict, must equal
    ours tensor by tensor."""
    import copy
    official = copy.deepcopy(converted['model']).train()
    ours = load_converted(converted['runs']['model'][0]).train()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 224, 224, generator=g)
    weights = torch.randn(2, NUM_CLASSES, generator=g)
    (official(x) * weights).sum().backward()
    (ours(x, mode='tensor') * weights).sum().backward()

    grads = official.state_dict()
    for name, p in official.named_parameters():
        grads[name] = p.grad
    expected = tool.convert_smlpnet(grads, check=False)
    got = dict(ours.named_parameters())
    assert set(got) <= set(expected)
    for name, p in got.items():
        scale = expected[name].abs().max().item()
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4,
                                   atol=1e-5 * max(scale, 1.), msg=name)
    # the running statistics were updated alike
    for name, buf in ours.named_buffers():
        if name.endswith('running_var'):
            torch.testing.assert_close(buf, expected[name], rtol=1e-5, atol=1e-6)


def test_swapped_axial_mapping_changes_the_output(converted):
    """Mapping proj_h -> mix_height (by name) instead of mix_width (by behaviour)
    gives a model that runs but is wrong: the test above would catch it."""
    dst, _ = converted['runs']['model']
    state = torch.load(dst, map_location='cpu', weights_only=True)['state_dict']
    swapped = OrderedDict()
    for k, v in state.items():
        if '.mix_width.' in k:
            k = k.replace('.mix_width.', '.mix_height.')
        elif '.mix_height.' in k:
            k = k.replace('.mix_height.', '.mix_width.')
        swapped[k] = v
    model = mm_classifier()
    model.load_state_dict(swapped, strict=True)
    diff, _ = max_diff(converted['model'], model)
    assert diff > 1e-2, diff


def test_use_ema_converts_model_ema(converted):
    dst, stdout = converted['runs']['model_ema']
    assert "'model_ema'" in stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert ckpt['meta']['source_key'] == 'model_ema'
    ours = load_converted(dst)
    diff, _ = max_diff(converted['ema'], ours)
    assert diff < 1e-5, diff
    other, _ = max_diff(converted['model'], ours)  # not the 'model' weights
    assert other > 1e-2, other


@pytest.mark.parametrize('arch', [
    dict(embed_dims=8, depths=[2, 1, 3, 1], mlp_ratio=2),
    dict(embed_dims=80, depths=[2, 8, 14, 2], mlp_ratio=3),  # 'tiny'
])
def test_arch_is_inferred_from_the_tensors(arch):
    state = OfficialSMLPNet(arch['embed_dims'], arch['depths'], arch['mlp_ratio'],
                            NUM_CLASSES).state_dict()
    found = tool.infer_smlpnet_arch(state)
    assert {k: found[k] for k in arch} == arch
    assert found['grids'] == [56, 28, 14, 7] and found['img_size'] == 224
    assert found['num_classes'] == NUM_CLASSES
    out = tool.convert_smlpnet(state)
    assert len(out) == len(state)
    assert out['backbone.stages.1.blocks.0.sparse_mlp.mix_width.weight'].shape == \
        (28, 28)


# --------------------------------------------------------------------------------
# bad inputs: one clear error each, nothing written
# --------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def small_state():
    return official_model(seed=3).state_dict()


def test_missing_source(tmp_path, capsys):
    src = tmp_path / 'nowhere' / 'smlp_s.pth'
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert 'does not exist' in err and str(src) in err
    assert not (tmp_path / 'dst.pth').exists()


def test_empty_source(tmp_path, capsys):
    src = tmp_path / 'empty.pth'
    src.write_bytes(b'')
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert 'empty' in err and '0 bytes' in err and str(src) in err
    assert not (tmp_path / 'dst.pth').exists()


def test_truncated_source(tmp_path, capsys, small_state):
    full = tmp_path / 'full.pth'
    torch.save({'model': small_state}, full)
    data = full.read_bytes()
    src = tmp_path / 'truncated.pth'
    src.write_bytes(data[:len(data) // 2])
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert 'truncated or corrupt' in err and str(src) in err
    assert 'Traceback' not in err
    assert not (tmp_path / 'dst.pth').exists()


class Payload:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __reduce__(self):
        return (os.system, ('echo pwned > marker', ))


@pytest.mark.parametrize('writer', ['torch.save', 'pickle.dump'])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, monkeypatch, capsys,
                                                 small_state, writer):
    monkeypatch.chdir(tmp_path)  # where the payload would write its marker
    src = tmp_path / 'evil.pth'
    if writer == 'torch.save':
        torch.save({'model': small_state, 'model_ema': Payload()}, src)
    else:  # a plain pickle (no tensors: those would be refused first)
        with open(src, 'wb') as f:
            pickle.dump({'model': Payload()}, f, protocol=2)
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert str(src) in err
    for words in ('refused for safety', 'not loaded',
                  'contains Python objects other than tensors'):
        assert words in err
    assert "'posix.system'" in err or "'nt.system'" in err  # names the culprit
    assert not (tmp_path / 'marker').exists()
    assert not (tmp_path / 'dst.pth').exists()


def test_source_without_model_entry(tmp_path, capsys, small_state):
    src = tmp_path / 'odd.pth'
    torch.save({'state_dict': small_state, 'epoch': 3}, src)
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert "'model' or 'model_ema'" in err
    assert "'state_dict'" in err and "'epoch'" in err  # the keys found
    assert str(src) in err


def test_use_ema_without_model_ema(tmp_path, capsys, small_state):
    src = tmp_path / 'no_ema.pth'
    torch.save({'model': small_state}, src)
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth', '--use-ema')
    assert rc == 1
    assert "no entry 'model_ema'" in err and "['model']" in err
    assert '--use-ema' in err and str(src) in err
    assert not (tmp_path / 'dst.pth').exists()


def test_unmapped_key_is_an_error(tmp_path, capsys, small_state):
    src = tmp_path / 'extra.pth'
    state = OrderedDict(small_state)
    state['token_mix.0.1.gate.weight'] = torch.zeros(3)
    state['pos_embed'] = torch.zeros(1, 4)
    torch.save({'model': state}, src)
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert '2 keys are not mapped' in err
    assert "'token_mix.0.1.gate.weight'" in err and "'pos_embed'" in err
    assert not (tmp_path / 'dst.pth').exists()


def test_missing_tensor_is_an_error(small_state):
    state = OrderedDict(small_state)
    del state['token_mix.2.1.proh_w.bias']
    with pytest.raises(tool.CheckpointError, match=r"missing \['backbone\.stages"
                       r"\.1\.blocks\.1\.sparse_mlp\.mix_height\.bias'\]"):
        tool.convert_smlpnet(state)


def test_refuses_to_overwrite_source(tmp_path, capsys, small_state):
    src = tmp_path / 'official.pth'
    torch.save({'model': small_state}, src)
    before = src.read_bytes()
    rc, _, err = run_main(capsys, src, tmp_path / '.' / 'official.pth')
    assert rc == 1
    assert 'refusing to overwrite the source' in err
    assert src.read_bytes() == before


# --------------------------------------------------------------------------------
# the shared helpers (mmsmlp.utils.checkpoint) beyond the CLI paths above
# --------------------------------------------------------------------------------
def test_interrupted_save_leaves_nothing_half_written(tmp_path, monkeypatch):
    from mmsmlp.utils import checkpoint as ckpt_utils
    dst = tmp_path / 'dst.pth'
    dst.write_bytes(b'previous')

    def broken_save(obj, f):
        f.write(b'half a checkpoint')
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_utils.torch, 'save', broken_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt_utils.save_converted_checkpoint({'a': torch.ones(2)}, dst)
    assert dst.read_bytes() == b'previous'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['dst.pth']


def test_save_writes_mmengine_layout(tmp_path):
    from mmsmlp.utils import save_converted_checkpoint
    dst = tmp_path / 'a' / 'b' / 'out.pth'
    save_converted_checkpoint({'x': torch.arange(3)}, dst, meta=dict(k=[1, 'v']))
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta'] == dict(k=[1, 'v'])
    assert isinstance(ckpt['state_dict'], OrderedDict)
    assert torch.equal(ckpt['state_dict']['x'], torch.arange(3))
    with pytest.raises(TypeError, match=r"meta\['k'\] is a Generator"):
        save_converted_checkpoint({'x': torch.ones(1)}, dst,
                                  meta=dict(k=torch.Generator()))


def test_rename_keys_rules():
    from mmsmlp.utils import CheckpointError, KeyRule, rename_keys
    state = OrderedDict([('a.0.w', torch.ones(1)), ('a.1.w', torch.ones(2)),
                         ('skip', torch.ones(3))])
    out = rename_keys(state, [(r'a\.(\d+)\.w', r'b.\1.weight'),
                              KeyRule('skip', None)])  # dropped on purpose
    assert list(out) == ['b.0.weight', 'b.1.weight']
    with pytest.raises(CheckpointError, match=r"'a\.0\.w' and 'a\.1\.w' are both "
                       r"mapped to 'b'"):
        rename_keys(state, [(r'a\.\d+\.w', 'b'), ('skip', None)])
    with pytest.raises(CheckpointError, match=r"1 keys are not mapped.*'skip'"):
        rename_keys(state, [(r'a\.(\d+)\.w', r'b.\1')])


def test_load_state_source_variants(tmp_path):
    import argparse

    from mmsmlp.utils import load_state_source
    sd = OrderedDict(w=torch.ones(2))
    # DeiT-style training checkpoints store argparse.Namespace args: allowed
    path = tmp_path / 'train.pth'
    torch.save({'model': sd, 'args': argparse.Namespace(lr=5e-4)}, path)
    key, got = load_state_source(path)
    assert key == 'model' and torch.equal(got['w'], sd['w'])
    # a bare state dict (timm-style files) with keys=(..., None)
    path = tmp_path / 'bare.pth'
    torch.save(sd, path)
    key, got = load_state_source(path, keys=('model', None))
    assert key is None and list(got) == ['w']
    # an entry that is not a state dict
    path = tmp_path / 'none.pth'
    torch.save({'model': None}, path)
    with pytest.raises(ValueError, match="entry 'model' of checkpoint .* is a "
                       'NoneType, not a state dict'):
        load_state_source(path)
