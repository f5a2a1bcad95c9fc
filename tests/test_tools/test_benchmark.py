"""tools/analysis_tools/benchmark.py: one run times several models (and switched
copies of them) side by side and reports images/s, spread, first-call time, peak
memory and speed-ups. The figures themselves are not asserted: these tests check,
on small models and few rounds, that the tool measures and compares what it says."""
import importlib.util
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'analysis_tools' / 'benchmark.py'
TOY_CLS = str(ROOT / 'configs' / 'toy' / 'smlpnet-mini_toy-imagenet.py')
spec = importlib.util.spec_from_file_location('benchmark', TOOL)
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)

# stand-ins for the official models/smlp.py (its code is not in this repository):
# an ``sMLPNet`` with the official constructor's keywords, built on the
# mmsmlp.testing copy of the official structure
STAND_IN = '''
import torch
from mmsmlp.testing import OfficialSMLPNet


class sMLPNet(OfficialSMLPNet):

    def __init__(self, in_chans=3, dim=80, alpha=3, num_classes=1000, patch_size=4,
                 image_size=224, depths=[2, 8, 14, 2], dp_rate=0., **kwargs):
        super().__init__(dim, depths, alpha, num_classes, img_size=image_size)
'''
SHIFTED = STAND_IN + '''
    def forward(self, x):
        return super().forward(x) + 1
'''
RENAMED = STAND_IN + '''
        self.head = self.mlp_head
        del self.mlp_head
'''


@pytest.fixture(autouse=True)
def keep_thread_count():
    """--threads changes the process-wide setting; later tests keep theirs."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def write(tmp_path, text, name='smlp.py'):
    path = tmp_path / name
    path.write_text(text)
    return path


def check_rows(results, batch, rounds):
    for r in results:
        assert len(r['times_ms']) == rounds and min(r['times_ms']) > 0, r['model']
        assert r['batch'] == batch
        assert r['median_ms'] == pytest.approx(statistics.median(r['times_ms']))
        assert r['images_per_s'] == pytest.approx(1e3 * batch / r['median_ms'])
        assert r['p25'] <= r['images_per_s'] <= r['p75']
        assert r['first_call_s'] > 0 and r['peak_mem_mb'] >= 0


def check_comparison(c, rows):
    fast, slow = rows[c['model']], rows[c['over']]
    assert c['ratio'] == pytest.approx(fast['images_per_s'] / slow['images_per_s'])
    per_round = [s / f for f, s in zip(fast['times_ms'], slow['times_ms'])]
    assert c['per_round_median'] == pytest.approx(statistics.median(per_round))
    assert c['per_round_p25'] <= c['per_round_median'] <= c['per_round_p75']


def test_side_by_side_with_the_official_file(tmp_path):
    """The 224 setting at a small size: ours, the mmsmlp.testing copy and the
    official file (here a stand-in), inference and training step, from the
    command line, with every pair the report promises."""
    official = write(tmp_path, STAND_IN)
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, str(TOOL), '--models', 'smlpnet-t', 'official-smlpnet-t',
         '--official-file', str(official), '--size', '64', '64', '--batch', '1',
         '--rounds', '3', '--warmup', '1', '--threads', '1', '--out', str(out)],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    s = report['settings']
    assert (s['threads'], s['size'], s['precision'], s['official_file']) == \
        (1, [64, 64], 'fp32', str(official))
    assert s['torch'] == torch.__version__
    names = ['smlpnet-t', 'official-smlpnet-t', 'official-smlpnet-t (smlp.py)']
    results = report['results']
    assert [(r['model'], r['mode']) for r in results] == \
        [(n, m) for m in ('infer', 'train') for n in names]
    assert [r['base'] for r in results[:3]] == [None, None, 'official-smlpnet-t']
    assert not any(r['compiled'] or r['switch'] for r in results)
    check_rows(results, batch=1, rounds=3)

    pairs = [(c['mode'], c['kind'], c['model'], c['over'])
             for c in report['comparisons']]
    assert pairs == [
        (mode, kind, fast, slow) for mode in ('infer', 'train')
        for kind, fast, slow in (('first vs other', names[0], names[1]),
                                 ('first vs other', names[0], names[2]),
                                 ('copy vs file', names[1], names[2]))]
    for c in report['comparisons']:
        check_comparison(c, {r['model']: r for r in results if r['mode'] == c['mode']})
        assert f"{c['mode']}: {c['model']} / {c['over']} = {c['ratio']:.3f}x" \
            in proc.stdout


def test_official_file_must_compute_what_the_copy_computes(tmp_path, capsys):
    argv = ['--models', 'official-smlpnet-t', '--size', '64', '64', '--mode',
            'infer', '--rounds', '1', '--warmup', '0', '--threads', '1']
    for text, message in ((SHIFTED, 'compute different outputs on the same weights '
                                    '(largest difference 1'),
                          (RENAMED, 'does not have the parameters of '
                                    'mmsmlp.testing.OfficialSMLPNet'),
                          ('x = 1\n', 'defines no class sMLPNet'),
                          ('import no_such_package\n', 'cannot import it')):
        path = write(tmp_path, text)
        with pytest.raises(SystemExit, match=re.escape(
                f'benchmark.py: error: --official-file {path}: ') + '.*'
                + re.escape(message)):
            benchmark.main(argv + ['--official-file', str(path)])


def test_ab_deploy_times_switched_copies_with_the_same_outputs():
    args = benchmark.parse_args(['--models', TOY_CLS, 'smlpnet-t', '--size', '64',
                                 '64', '--mode', 'infer', '--ab', 'deploy',
                                 '--rounds', '2', '--warmup', '0', '--threads', '1'])
    entries = benchmark.build_entries(args, None)
    assert [(e['name'], e['switch'], e['base']) for e in entries] == [
        (TOY_CLS, None, None), ('smlpnet-t', None, None),
        (f'{TOY_CLS} +deploy', 'deploy', TOY_CLS),
        ('smlpnet-t +deploy', 'deploy', 'smlpnet-t')]
    x = torch.randn(2, 3, 64, 64)
    for plain, switched in zip(entries[:2], entries[2:]):
        blocks = [m for m in plain['model'].modules() if hasattr(m, 'deploy')]
        assert blocks and not any(b.deploy for b in blocks)  # the original stays
        assert all(m.deploy for m in switched['model'].modules()
                   if hasattr(m, 'deploy'))
        with torch.no_grad():
            torch.testing.assert_close(switched['model'].eval()(x, mode='tensor'),
                                       plain['model'].eval()(x, mode='tensor'))

    results = benchmark.measure(entries, 'infer', args)
    check_rows(results, batch=4, rounds=args.rounds)
    rows = {r['model']: r for r in results}
    pairs = benchmark.comparisons(results)
    assert [(c['kind'], c['model'], c['over']) for c in pairs] == [
        ('first vs other', TOY_CLS, 'smlpnet-t'),
        ('first vs other', f'{TOY_CLS} +deploy', 'smlpnet-t +deploy'),
        ('ab', f'{TOY_CLS} +deploy', TOY_CLS),
        ('ab', 'smlpnet-t +deploy', 'smlpnet-t')]
    for c in pairs:
        check_comparison(c, rows)


def test_ab_compile_compiles_the_copies_only(monkeypatch, capsys):
    """torch.compile is replaced by its graph capture alone (backend 'eager'):
    inductor's code generation takes minutes on a small machine."""
    compiled = []
    real_compile = torch.compile

    def capture(fn, **kwargs):
        compiled.append((fn, kwargs))
        return real_compile(fn, backend='eager', **kwargs)
    monkeypatch.setattr(benchmark.torch, 'compile', capture)
    argv = ['--models', TOY_CLS, '--task', 'backbone', '--size', '64', '96',
            '--batch', '1', '--rounds', '2', '--warmup', '0', '--threads', '1',
            '--ab', 'compile']
    benchmark.main(argv)
    text = capsys.readouterr().out
    # one compiled copy per mode, static shapes unless --dynamic
    assert len(compiled) == 2 and all(kw == dict(dynamic=None) for _, kw in compiled)
    assert all(fn.__class__.__name__ == 'SMLPNet' for fn, _ in compiled)
    for mode in ('infer', 'train'):
        assert f'{mode}: {TOY_CLS} +compile / {TOY_CLS} = ' in text

    args = benchmark.parse_args(argv)
    results = benchmark.measure(benchmark.build_entries(args, None), 'train', args)
    assert [(r['model'], r['compiled']) for r in results] == [
        (TOY_CLS, False), (f'{TOY_CLS} +compile', True)]


def test_train_step_updates_the_weights_unless_told_not_to():
    x = torch.randn(2, 3, 64, 64)
    for optimizer, updates in (('adamw', True), ('none', False)):
        args = benchmark.parse_args(['--models', TOY_CLS, '--optimizer', optimizer])
        model = benchmark.build_entries(args, None)[0]['model']
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        benchmark.make_step(model, 'train', x, args)()
        changed = [not torch.equal(p, before[n]) for n, p in model.named_parameters()]
        assert any(changed) == updates, optimizer
        # gradients are released after the step either way
        assert all(p.grad is None for p in model.parameters()), optimizer


def test_timm_models_with_a_fixed_input_size_are_built_for_the_input():
    """Swin-T as a backbone at a size its default (224) cannot take."""
    args = benchmark.parse_args(['--models', 'swin_tiny_patch4_window7_224',
                                 'resnet18', '--task', 'backbone', '--size', '64',
                                 '96'])
    entries = benchmark.build_entries(args, None)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for e in entries:
            outs = e['model'].eval()(x)
            reductions = e['model'].feature_info.reduction()
            assert len(outs) == len(reductions) >= 4, e['name']
            for out, r in zip(outs, reductions):  # Swin: (B, H, W, C)
                grid = (math.ceil(64 / r), math.ceil(96 / r))
                assert grid in (tuple(out.shape[1:3]), tuple(out.shape[2:4])), \
                    (e['name'], r, out.shape)


@pytest.mark.parametrize('argv, message', [
    (['--size', '16', '16'], 'sides must be at least 32'),
    (['--rounds', '0'], '--rounds=0: must be at least 1'),
    (['--threads', '0'], '--threads=0: must be at least 1'),
    (['--models', 'resnet18', 'smlpnet-t', 'resnet18'],
     '--models: resnet18 given more than once'),
    (['--device', 'cpu', '--precision', 'fp16'], 'fp16 needs --device cuda'),
    (['--device', 'gpu0'], '--device gpu0: '),
    (['--device', 'meta'], '--device meta: accepted: cpu, cuda'),
    (['--compile', '--ab', 'compile'], 'drop --compile'),
    (['--dynamic'], '--dynamic needs --compile or --ab compile'),
    (['--ab', 'deploy'], 'use --mode infer'),
    (['--official-file', 'no/such/smlp.py'], 'no/such/smlp.py: no such file'),
    (['--models', 'smlpnet-t', '--official-file', __file__],
     'add official-smlpnet-<arch> to --models'),
])
def test_bad_arguments_are_named(capsys, argv, message):
    with pytest.raises(SystemExit):
        benchmark.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['--models', 'official-smlpnet-t', '--size', '64', '96'],
     'square inputs with sides divisible by 32, not --size 64 96'),
    (['--models', 'official-smlpnet-t', '--task', 'backbone'], 'use --task cls'),
    (['--models', 'smlpnet-x'], "unknown sMLPNet arch 'x'"),
    (['--models', 'no_such_model'], 'no_such_model: not smlpnet-<arch>'),
    (['--models', 'official-smlpnet-t', '--ab', 'deploy'],
     'official-smlpnet-t has no switch_to_deploy()'),
])
def test_bad_models_are_named(argv, message):
    with pytest.raises(SystemExit, match='benchmark.py: error: .*' + re.escape(message)):
        benchmark.main(argv + ['--mode', 'infer', '--rounds', '1', '--warmup', '0'])
