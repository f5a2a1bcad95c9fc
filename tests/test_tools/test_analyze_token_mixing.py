"""tools/analysis_tools/analyze_token_mixing.py on tiny checkpoints of the toy
configs: the pictures are valid images, the sparsity numbers are those of the
checkpoint's matrices, S2-MLP has nothing to draw, bad inputs are clear errors."""
import csv
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'analyze_token_mixing.py')
SMLP_CFG = osp.join(ROOT, 'configs', 'toy', 'smlpnet-mini_toy-imagenet.py')
RES_CFG = osp.join(ROOT, 'configs', 'toy', 'mask-rcnn_resmlp-mini_fpn_toy-coco.py')
S2_CFG = osp.join(ROOT, 'configs', 'toy', 'upernet_s2mlp-mini_toy-ade20k.py')
# the toy configs, shrunk (the same options go to the tool)
SMLP_OPTS = ['model.backbone.arch.embed_dims=16', 'model.backbone.img_size=64',
             'model.head.in_channels=128']  # grids 16, 8, 4, 2
RES_OPTS = ['model.backbone.arch.embed_dims=32', 'model.backbone.arch.num_blocks=3',
            'model.backbone.img_size=128',  # 8 x 8 patches: 64 x 64 matrices
            'model.neck.in_channels=[32,32,32,32]']
THRESHOLD = 0.01


def _load_tool():
    spec = importlib.util.spec_from_file_location('analyze_token_mixing', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def build(path, opts):
    from mmengine.config import DictAction
    cfg = Config.fromfile(path)
    parsed = {}
    for opt in opts:
        key, value = opt.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    cfg.merge_from_dict(parsed)
    return tool.build_model(cfg)


def conv_like(grid, kernel):
    """The ``HW x HW`` matrix of a zero-padded 2-D convolution over the grid."""
    h, w = grid
    k = kernel.shape[0] // 2
    mat = torch.zeros(h * w, h * w)
    for i in range(h):
        for j in range(w):
            for di in range(-k, k + 1):
                for dj in range(-k, k + 1):
                    if 0 <= i + di < h and 0 <= j + dj < w:
                        mat[i * w + j, (i + di) * w + j + dj] = kernel[di + k, dj + k]
    return mat


def heavy_tailed(model, seed):
    """Matrices with a few large and many small entries: non-trivial sparsity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g)**3 * 0.02)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp('ckpt')
    # SMLPNet classifier, saved as a backbone-only checkpoint (keys without
    # 'backbone.'), as mmengine.runner.save_checkpoint writes it
    from mmengine.runner import save_checkpoint
    smlp = build(SMLP_CFG, SMLP_OPTS)
    heavy_tailed(smlp, 0)
    smlp_path = str(root / 'smlpnet.pth')
    save_checkpoint(dict(meta=dict(), state_dict=smlp.backbone.state_dict()),
                    smlp_path)
    # ResMLP detector (full model, 'backbone.' keys); block 0 mixes patches like
    # a 3 x 3 convolution (a Toeplitz matrix)
    res = build(RES_CFG, RES_OPTS)
    heavy_tailed(res, 1)
    kernel = torch.arange(1., 10.).reshape(3, 3) - 5  # one zero tap at the center
    with torch.no_grad():
        res.backbone.blocks[0].token_mix.weight.copy_(conv_like((8, 8), kernel))
    res_path = str(root / 'resmlp.pth')
    torch.save(dict(meta=dict(), state_dict=res.state_dict()), res_path)
    return dict(smlp=smlp_path, res=res_path, kernel=kernel)


def run(args):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, TOOL] + args, capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env=env)


def in_process(args, capsys):
    """Run the tool's ``main`` here (cheaper than a subprocess): exit status and
    the output."""
    with pytest.raises(SystemExit) as exc:
        tool.main(args)
    out = capsys.readouterr()
    code = exc.value.code
    if isinstance(code, str):  # sys.exit(message): status 1, message on stderr
        return 1, out.out, code
    return code or 0, out.out, out.err


def assert_image(path):
    assert osp.isfile(path), path
    img = cv2.imread(path)
    assert img is not None, f'{path} is not a readable image'
    assert img.shape[0] >= 200 and img.shape[1] >= 200, img.shape
    assert img.std() > 5  # not a blank canvas


def direct_sparsity(state, key):
    w = state[key].float().abs()
    return float((w < THRESHOLD * w.max()).float().mean())


def check_numbers(out_dir, ckpt, roles, prefix):
    """The JSON / CSV numbers against the checkpoint's own tensors."""
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    with open(osp.join(out_dir, 'sparsity.json')) as f:
        report = json.load(f)
    assert report['threshold'] == THRESHOLD
    for row in report['layers']:
        assert list(row['weights']) == roles
        for role, entry in row['weights'].items():
            key = entry['key']
            assert key == f'{prefix}{row["block"]}.{role}.weight'
            assert entry['shape'] == list(state[key].shape)
            assert entry['sparsity'] == pytest.approx(direct_sparsity(state, key),
                                                      abs=1e-6)
            assert entry['max_abs'] == pytest.approx(
                float(state[key].abs().max()), rel=1e-6)
    with open(osp.join(out_dir, 'sparsity.csv')) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report['layers']) * len(roles)
    for r in rows:
        assert float(r['sparsity']) == pytest.approx(
            direct_sparsity(state, r['key']), abs=1e-5)
    return report


def test_smlpnet(checkpoints, tmp_path):
    out_dir = str(tmp_path / 'smlp')
    res = run([SMLP_CFG, checkpoints['smlp'], '--out-dir', out_dir,
               '--cfg-options'] + SMLP_OPTS)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    blocks = ['stages.0.blocks.0', 'stages.1.blocks.0', 'stages.2.blocks.0',
              'stages.2.blocks.1', 'stages.3.blocks.0']
    files = [f'layer{i:02d}_{b.replace(".", "_")}.png' for i, b in enumerate(blocks)]
    files += ['overview_matrices.png', 'sparsity.png']
    for name in files:
        assert_image(osp.join(out_dir, name))
        assert osp.join(out_dir, name) in res.stdout  # where files were written
    assert not osp.exists(osp.join(out_dir, 'overview_queries.png'))  # 1-D grids
    assert f'Wrote {len(files) + 2} files' in res.stdout
    roles = ['sparse_mlp.mix_height', 'sparse_mlp.mix_width', 'sparse_mlp.fuse',
             'channel_mlp.fc1', 'channel_mlp.fc2']
    report = check_numbers(out_dir, checkpoints['smlp'], roles, prefix='')
    assert report['backbone'] == 'SMLPNet'
    assert [r['block'] for r in report['layers']] == blocks
    assert report['token_mixing_roles'] == roles[:2]
    grids = [r['weights']['sparse_mlp.mix_height']['grid'] for r in report['layers']]
    assert grids == [[16], [8], [4], [4], [2]]
    # the table printed per layer
    first = f'{report["layers"][0]["weights"]["sparse_mlp.mix_height"]["sparsity"]:.1%}'
    assert first in res.stdout


def test_resmlp(checkpoints, tmp_path):
    out_dir = str(tmp_path / 'res')
    res = run([RES_CFG, checkpoints['res'], '--out-dir', out_dir,
               '--query', 'center', '0,7', '--cfg-options'] + RES_OPTS)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    for name in ['layer00_blocks_0.png', 'layer01_blocks_1.png',
                 'layer02_blocks_2.png', 'overview_matrices.png',
                 'overview_queries.png', 'sparsity.png']:
        assert_image(osp.join(out_dir, name))
    roles = ['token_mix', 'channel_mlp.fc1', 'channel_mlp.fc2']
    report = check_numbers(out_dir, checkpoints['res'], roles, prefix='backbone.')
    assert report['backbone'] == 'ResMLP'
    assert report['token_mixing_roles'] == ['token_mix']
    first = report['layers'][0]['weights']['token_mix']
    assert first['grid'] == [8, 8] and first['shape'] == [64, 64]
    # the conv-like matrix: at most the 8 non-zero taps of the kernel per row
    # (fewer at the border) are non-zero, the rest is exactly 0
    nonzero = int((conv_like((8, 8), checkpoints['kernel']) != 0).sum())
    assert first['sparsity'] == pytest.approx(1 - nonzero / 64**2, abs=1e-9)
    assert 'A (token_mix)' in res.stdout and 'B (channel_mlp.fc1)' in res.stdout


def test_offset_profile_recovers_a_convolution_kernel(checkpoints):
    """A Toeplitz (convolution-like) matrix has one weight per offset: the mean
    per offset of the ResMLP panels is the kernel, zero beyond it."""
    kernel = checkpoints['kernel']
    prof = tool.offset_profile(conv_like((6, 7), kernel), (6, 7))
    assert prof.shape == (11, 13)
    torch.testing.assert_close(prof[4:7, 5:8], kernel)
    prof[4:7, 5:8] = 0
    assert prof.abs().max() == 0
    # 1-D: a tridiagonal matrix
    mat = torch.diag(torch.full((5, ), 2.)) + torch.diag(torch.ones(4), 1)
    torch.testing.assert_close(tool.offset_profile(mat, (5, )),
                               torch.tensor([0., 0., 0., 0., 2., 1., 0., 0., 0.]))


def test_sparsity_definition():
    w = torch.tensor([[1., -0.5, 0.009], [0., -0.02, 0.0099]])
    assert tool.sparsity(w, 0.01) == (pytest.approx(3 / 6), 1.0)
    assert tool.sparsity(w, 0.1)[0] == pytest.approx(4 / 6)
    assert tool.sparsity(torch.zeros(3, 3), 0.01) == (1.0, 0.)


def test_s2mlp_has_nothing_to_draw(checkpoints, tmp_path, capsys):
    out_dir = str(tmp_path / 's2')
    code, out, err = in_process([S2_CFG, checkpoints['res'], '--out-dir', out_dir],
                                capsys)
    assert code == 0, err
    assert 'S2MLP' in out and 'nothing to draw' in out and 'spatial shift' in out
    assert not osp.exists(out_dir)  # nothing written


@pytest.mark.parametrize('which', ['config', 'checkpoint'])
def test_missing_file(checkpoints, tmp_path, capsys, which):
    missing = str(tmp_path / ('nope.py' if which == 'config' else 'nope.pth'))
    args = [missing, checkpoints['res']] if which == 'config' else \
        [RES_CFG, missing]
    code, _, err = in_process(args + ['--out-dir', str(tmp_path / 'o')], capsys)
    assert code == 1
    assert f'{which} file' in err and 'nope' in err and 'does not exist' in err
    assert not osp.exists(tmp_path / 'o')


def test_checkpoint_of_another_architecture(checkpoints, tmp_path, capsys):
    # SMLPNet weights for the ResMLP detector
    code, _, err = in_process([RES_CFG, checkpoints['smlp'], '--out-dir',
                               str(tmp_path / 'o'), '--cfg-options'] + RES_OPTS,
                              capsys)
    assert code == 1
    assert 'does not fit the ResMLP' in err and 'another architecture' in err
    assert 'smlpnet.pth' in err
    # a ResMLP checkpoint without one block's token mixing (a shallower model)
    state = torch.load(checkpoints['res'], weights_only=True)['state_dict']
    state = {k: v for k, v in state.items() if not k.startswith('backbone.blocks.2')}
    short = str(tmp_path / 'short.pth')
    torch.save(dict(state_dict=state), short)
    code, _, err = in_process([RES_CFG, short, '--out-dir', str(tmp_path / 'o'),
                               '--cfg-options'] + RES_OPTS, capsys)
    assert code == 1
    assert "no weight 'blocks.2.token_mix.weight'" in err and 'short.pth' in err


def test_unreadable_checkpoint(tmp_path, capsys):
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(b'PK\x03\x04 not a zip')
    code, _, err = in_process([RES_CFG, str(bad), '--out-dir', str(tmp_path / 'o'),
                               '--cfg-options'] + RES_OPTS, capsys)
    assert code == 1 and 'truncated.pth' in err and 'truncated or corrupt' in err


def test_bad_arguments(capsys):
    for args in (['--threshold', '1.5'], ['--query', 'middle']):
        with pytest.raises(SystemExit) as exc:
            tool.parse_args([RES_CFG, 'x.pth', '--out-dir', 'o'] + args)
        assert exc.value.code == 2
    assert '--query' in capsys.readouterr().err
