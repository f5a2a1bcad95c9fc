"""The sMLP ablation switches of the paper (Tables 1-4) as SMLPNet options, with the
parameter and FLOP counts of Tables 1-3 (seed 000; facts file)."""
import pytest
import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.registry import DefaultScope

from mmsmlp.models import SMLPNet

SMALL = dict(embed_dims=16, depths=[1, 1, 2, 1])


def counts(arch, channels, **kwargs):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='SMLPNet', arch=arch, out_indices=(3, ), **kwargs),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=8 * channels))).eval()
    analyzer = FlopAnalyzer(model, torch.randn(1, 3, 224, 224))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return parameter_count(model)[''] / 1e6, analyzer.total() / 1e9


# (arch, C, options, paper params M, paper GFLOPs). The paper rounds to 0.1; the
# tolerances below (0.15 M, 0.06 G) cover the rows where the measured count rounds
# differently (Table 2 rows 4-5: 49.78 / 44.96 M measured; Table 3: 7.05 G).
TABLES = [
    ('tiny-a2', 80, dict(local_mix=False), 19.1, 3.9),  # Table 1: global only
    ('base', 112, dict(smlp_stages=(1, 2, 3)), 65.8, 13.7),  # Table 2
    ('base', 112, dict(smlp_stages=(2, 3)), 64.3, 12.4),
    ('base', 112, dict(smlp_stages=(3, )), 49.9, 9.5),
    ('base', 112, dict(smlp_stages=()), 45.1, 9.3),
    ('small', 96, dict(fuse_mode='sum'), 33.2, 7.0),  # Table 3
    ('small', 96, dict(fuse_mode='weighted_sum'), 33.3, 7.0),
]


@pytest.mark.parametrize('arch,channels,options,params,gflops', TABLES,
                         ids=[str(t[2]) for t in TABLES])
def test_ablation_counts_match_the_paper(arch, channels, options, params, gflops):
    p, f = counts(arch, channels, **options)
    assert abs(p - params) < 0.15
    assert abs(f - gflops) < 0.06


def test_fusion_by_sum_removes_exactly_the_fuse_layers():
    full = SMLPNet(arch=SMALL, out_indices=3)
    summed = SMLPNet(arch=SMALL, out_indices=3, fuse_mode='sum')
    weighted = SMLPNet(arch=SMALL, out_indices=3, fuse_mode='weighted_sum')
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    chans = [16 * 2**i for i, d in enumerate(SMALL['depths']) for _ in range(d)]
    assert n(full) - n(summed) == sum(3 * c * c for c in chans)
    assert n(weighted) - n(summed) == sum(3 * c for c in chans)


def test_no_smlp_stage_has_only_the_depthwise_conv():
    model = SMLPNet(arch=SMALL, smlp_stages=(2, 3))
    assert not hasattr(model.stages[0].blocks[0], 'sparse_mlp')
    assert hasattr(model.stages[2].blocks[0], 'sparse_mlp')
    assert hasattr(model.stages[0].blocks[0], 'local_mix')
    glob = SMLPNet(arch=SMALL, local_mix=False)
    assert not hasattr(glob.stages[0].blocks[0], 'local_mix')


@pytest.mark.parametrize('branch_mode', ['parallel', 'sequential'])
@pytest.mark.parametrize('identity', [True, False])
@pytest.mark.parametrize('fuse_mode', ['concat', 'sum', 'weighted_sum'])
def test_every_combination_runs_at_any_size(branch_mode, identity, fuse_mode):
    model = SMLPNet(arch=SMALL, branch_mode=branch_mode, identity_branch=identity,
                    fuse_mode=fuse_mode)
    outs = model(torch.randn(1, 3, 65, 97))
    sum(o.mean() for o in outs).backward()
    assert outs[3].shape == (1, 128, 3, 4)


def test_sequential_branches_differ_from_parallel():
    torch.manual_seed(0)
    par = SMLPNet(arch=SMALL).eval()
    seq = SMLPNet(arch=SMALL, branch_mode='sequential').eval()
    seq.load_state_dict(par.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(par(x)[3], seq(x)[3])


@pytest.mark.parametrize('kwargs,match', [
    (dict(fuse_mode='max'), "fuse_mode='max'"),
    (dict(branch_mode='mixed'), "branch_mode='mixed'"),
    (dict(smlp_stages=(4, )), r'smlp_stages=\(4,\) contains 4'),
    (dict(local_mix=False, smlp_stages=(3, )), 'without token mixing'),
])
def test_bad_ablation_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SMLPNet(arch=SMALL, **kwargs)
