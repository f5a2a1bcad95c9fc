"""tools/analysis_tools/benchmark.py: one run times several models side by side and
reports images/s, spread, speed-ups and peak memory (figures are not asserted:
this checks that the tool measures what it says, on tiny settings)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    'benchmark', ROOT / 'tools' / 'analysis_tools' / 'benchmark.py')
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


@pytest.fixture(autouse=True)
def keep_thread_count():
    """--threads changes the process-wide setting; later tests keep theirs."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_side_by_side_run_reports_every_model_and_the_speedups(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    benchmark.main(['--models', 'smlpnet-t', 'official-smlpnet-t', '--size', '64',
                    '64', '--batch', '1', '--repeats', '3', '--warmup', '1',
                    '--threads', '1', '--out', str(out)])
    text = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert [(r['model'], r['mode']) for r in results] == [
        ('smlpnet-t', 'infer'), ('official-smlpnet-t', 'infer'),
        ('smlpnet-t', 'train'), ('official-smlpnet-t', 'train')]
    for r in results:
        assert len(r['times_ms']) == 3 and min(r['times_ms']) > 0
        assert r['images_per_s'] == pytest.approx(1e3 / sorted(r['times_ms'])[1])
        assert r['p25'] <= r['images_per_s'] <= r['p75']
        assert r['peak_mem_mb'] >= 0
    for mode in ('infer', 'train'):
        assert f'{mode}: smlpnet-t / official-smlpnet-t = ' in text
    assert 'per round: median' in text


def test_train_step_without_optimizer_leaves_the_weights(capsys):
    args = benchmark.parse_args(['--models', 'smlpnet-t', '--size', '64', '64',
                                 '--optimizer', 'none'])
    model = benchmark.build_models(args)['smlpnet-t']
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step = benchmark.make_step(model, 'train', torch.randn(2, 3, 64, 64), args)
    step()
    for n, p in model.named_parameters():
        assert p.grad is None and torch.equal(p, before[n]), n
    args.optimizer = 'adamw'
    benchmark.make_step(model, 'train', torch.randn(2, 3, 64, 64), args)()
    assert not all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_fused_adamw_is_the_same_update():
    """'adamw-fused' changes how AdamW runs, not what it computes."""
    args = benchmark.parse_args(['--models', 'smlpnet-t', '--size', '64', '64'])
    x = torch.randn(2, 3, 64, 64)
    updated = {}
    for optimizer in ('adamw', 'adamw-fused'):
        torch.manual_seed(0)
        model = benchmark.build_models(args)['smlpnet-t']
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        args.optimizer = optimizer
        benchmark.make_step(model, 'train', x, args)()
        updated[optimizer] = {n: p.detach() for n, p in model.named_parameters()}
        assert not all(torch.equal(p, before[n]) for n, p in updated[optimizer].items())
    for name, param in updated['adamw'].items():
        torch.testing.assert_close(updated['adamw-fused'][name], param, msg=name)


def test_interpolation_on_and_precomputed(capsys):
    benchmark.main(['--models', 'smlpnet-t', '--task', 'backbone', '--size', '64',
                    '96', '--batch', '1', '--repeats', '1', '--warmup', '0',
                    '--mode', 'infer', '--interp', 'both', '--threads', '1'])
    text = capsys.readouterr().out
    assert 'smlpnet-t (precomputed)' in text
    # sMLPNet-T: 26 blocks, two axial mixings each
    assert 'smlpnet-t: its 52 axial weight resizes for 64x96 take' in text


@pytest.mark.parametrize('argv, message', [
    (['--size', '16', '16'], 'sides must be at least 32'),
    (['--repeats', '0'], '--repeats=0 is too small'),
])
def test_bad_arguments_are_named(capsys, argv, message):
    with pytest.raises(SystemExit):
        benchmark.parse_args(argv)
    assert message in capsys.readouterr().err


def test_official_structure_needs_square_inputs():
    with pytest.raises(SystemExit, match='square'):
        benchmark.main(['--models', 'official-smlpnet-t', '--size', '64', '96',
                        '--repeats', '1', '--warmup', '0'])


def test_smlp_ablations_are_copies_with_cut_down_token_mixing(capsys):
    from mmsmlp.models.backbones.smlpnet import SparseMLP
    args = benchmark.parse_args(['--models', 'smlpnet-t', '--size', '64', '64',
                                 '--ablate-smlp'])
    models = benchmark.build_models(args)
    assert list(models) == ['smlpnet-t', 'smlpnet-t (sMLP fuse only)',
                            'smlpnet-t (sMLP identity)']
    smlp = next(m for m in models['smlpnet-t'].modules() if isinstance(m, SparseMLP))
    x, shortcut = torch.randn(2, 16, 16, 80), torch.randn(2, 16, 16, 80)
    full = smlp(x, shortcut)
    fuse_only = benchmark.ablate_smlp(smlp, 'fuse only')
    identity = benchmark.ablate_smlp(smlp, 'identity')
    parts = smlp.fuse.weight.chunk(3, dim=1)
    torch.testing.assert_close(fuse_only(x, shortcut),
                               shortcut + x @ (parts[0] + parts[1] + parts[2]).t())
    torch.testing.assert_close(identity(x, shortcut), x + shortcut)
    # the model itself keeps its sMLP
    torch.testing.assert_close(smlp(x, shortcut), full)
    assert not torch.allclose(fuse_only(x, shortcut), full)

    benchmark.main(['--models', 'smlpnet-t', 'official-smlpnet-t', '--size', '64',
                    '64', '--batch', '1', '--repeats', '2', '--warmup', '0',
                    '--mode', 'train', '--threads', '1', '--ablate-smlp'])
    text = capsys.readouterr().out
    for kind in ('fuse only', 'identity'):
        assert (f'train: official-smlpnet-t / smlpnet-t (sMLP {kind}) = ' in text)


def test_fuse_only_ablation_needs_the_concat_fuse():
    from mmsmlp.models.backbones.smlpnet import SparseMLP
    with pytest.raises(ValueError, match="fuse_mode='sum' has no fuse products"):
        benchmark.ablate_smlp(SparseMLP(8, (4, 4), fuse_mode='sum'), 'fuse only')
