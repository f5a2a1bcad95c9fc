"""tools/model_converters/timm_resmlp2mmsmlp.py: timm's ``resmlp_12_224`` (random
weights, Affine and LayerScale moved away from their init), converted, must give
the same logits in mmpretrain; the official key layout too; bad inputs fail with
clear messages."""
import importlib.util
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'model_converters' / 'timm_resmlp2mmsmlp.py'


def _load_tool():
    spec = importlib.util.spec_from_file_location('timm_resmlp2mmsmlp', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def randomise(model, seed):
    """Random Affine, LayerScale and head (timm zeroes the head), so that every
    tensor changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('alpha'):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith('beta'):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif name.endswith(('ls1', 'ls2')):
                p.copy_(torch.rand(p.shape, generator=g) * 0.3 + 0.05)
            elif name.startswith('head'):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def timm_resmlp12(seed=0):
    import timm
    torch.manual_seed(seed)
    return randomise(timm.create_model('resmlp_12_224', pretrained=False), seed)


def timm_small(img_size, patch, num_classes=7, seed=0):
    from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock
    torch.manual_seed(seed)
    return randomise(MlpMixer(num_classes=num_classes, img_size=img_size,
                              patch_size=patch, num_blocks=2, embed_dim=24,
                              mlp_ratio=3, block_layer=ResBlock, norm_layer=Affine),
                     seed)


def to_official(state):
    """timm's layout -> the official facebookresearch/deit one (the inverse of
    timm's ``checkpoint_filter_fn``)."""
    out = OrderedDict()
    for k, v in state.items():
        k = k.replace('stem.', 'patch_embed.').replace('linear_tokens.', 'attn.')
        k = k.replace('mlp_channels.', 'mlp.').replace('.ls1', '.gamma_1')
        k = k.replace('.ls2', '.gamma_2')
        out[k] = v.reshape(-1) if k.endswith(('alpha', 'beta')) else v
    return out


def classifier(arch='s12', num_classes=1000, channels=384, img_size=224):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import mmsmlp  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='ResMLP', arch=arch, img_size=img_size),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=num_classes,
                      in_channels=channels))).eval()


def load_converted(path, **kwargs):
    from mmengine.runner import load_checkpoint
    model = classifier(**kwargs)
    load_checkpoint(model, str(path), map_location='cpu', strict=True)
    return model


@torch.no_grad()
def max_diff(reference, ours, size=224, seed=0):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    ref = reference(x)
    out = ours(x, mode='tensor')
    assert out.shape == ref.shape
    return (out - ref).abs().max().item(), ref


def run_cli(*args):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')])
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def run_main(capsys, *args):
    rc = tool.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope='module')
def resmlp12():
    return timm_resmlp12(seed=1)


@pytest.fixture(scope='module')
def converted(resmlp12, tmp_path_factory):
    """timm's state dict saved bare, converted by the CLI in a new interpreter."""
    tmp = tmp_path_factory.mktemp('resmlp')
    src = tmp / 'resmlp_12_224.pth'
    torch.save(resmlp12.state_dict(), src)
    dst = tmp / 'out' / 'resmlp_s12.pth'  # parent folder does not exist
    proc = run_cli(src, dst)
    assert proc.returncode == 0, proc.stderr
    return dst, proc.stdout


# --------------------------------------------------------------------------------
# equivalence
# --------------------------------------------------------------------------------
def test_timm_resmlp_12_logits_are_reproduced(resmlp12, converted):
    dst, stdout = converted
    assert 'timm layout' in stdout and 'top-level state dict' in stdout
    assert 'embed_dims=384, num_blocks=12, patch_size=16, mlp_ratio=4' in stdout
    assert "backbone=dict(type='ResMLP', arch='s12')" in stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert ckpt['meta']['source_layout'] == 'timm'
    assert ckpt['meta']['source_key'] is None
    state = ckpt['state_dict']
    # nothing dropped; each block gains the grid its token mixing was trained on
    grids = [k for k in state if k.endswith('token_mix.reference_grid')]
    assert len(grids) == 12 and all(state[k].tolist() == [14, 14] for k in grids)
    assert len(state) - len(grids) == len(resmlp12.state_dict())
    assert all(k.startswith(('backbone.', 'head.fc.')) for k in state)
    assert state['backbone.blocks.3.norm2.alpha'].shape == (384, )
    assert state['backbone.blocks.3.token_mix.weight'].shape == (196, 196)

    diff, ref = max_diff(resmlp12, load_converted(dst))
    assert ref.abs().max() > 0.1  # logits of a meaningful size
    assert diff < 1e-5, diff


def test_official_layout_in_model_entry(resmlp12, converted, tmp_path, capsys):
    """The official file ({'model': ...}, deit key names, Affine (C,)) converts to
    exactly the tensors of the timm file (whose logits are checked above)."""
    src = tmp_path / 'resmlp_12_no_dist.pth'
    torch.save({'model': to_official(resmlp12.state_dict()), 'epoch': 399}, src)
    dst = tmp_path / 'official.pth'
    rc, out, err = run_main(capsys, src, dst)
    assert rc == 0, err
    assert "official layout) from 'model'" in out
    got = torch.load(dst, map_location='cpu', weights_only=True)
    want = torch.load(converted[0], map_location='cpu', weights_only=True)
    assert got['meta']['source_layout'] == 'official'
    assert list(got['state_dict']) == list(want['state_dict'])
    for k, v in want['state_dict'].items():
        assert torch.equal(got['state_dict'][k], v), k


def test_patch8_custom_arch_other_resolution(tmp_path, capsys):
    """A B24-like layout (patch 8) at 64 px: arch and img_size are inferred and
    printed for the config; the logits match at 64."""
    model = timm_small(img_size=64, patch=8)
    src = tmp_path / 'small.pth'
    torch.save({'state_dict': model.state_dict()}, src)
    rc, out, err = run_main(capsys, src, tmp_path / 'small_mm.pth')
    assert rc == 0, err
    assert 'token grid=8x8 (img_size 64), num_classes=7' in out
    arch = dict(embed_dims=24, num_blocks=2, patch_size=8, mlp_ratio=3)
    assert f'arch={arch!r}, img_size=64)' in out
    ours = load_converted(tmp_path / 'small_mm.pth', arch=arch, num_classes=7,
                          channels=24, img_size=64)
    diff, _ = max_diff(model, ours, size=64)
    assert diff < 1e-5, diff


def test_converted_checkpoint_loads_at_another_resolution(converted):
    """The 14x14 token mixing of a 224 checkpoint is resized on load to 16x16."""
    model = load_converted(converted[0], img_size=256)
    assert model.backbone.blocks[0].token_mix.weight.shape == (256, 256)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 256, 256), mode='tensor')).all()


@pytest.mark.parametrize('arch', [
    dict(img_size=224, patch=16),
    dict(img_size=96, patch=8),
])
def test_arch_is_inferred_from_the_tensors(arch):
    state = timm_small(arch['img_size'], arch['patch'], num_classes=0).state_dict()
    found = tool.infer_resmlp_arch(state)
    side = arch['img_size'] // arch['patch']
    assert found == dict(layout='timm', embed_dims=24, num_blocks=2,
                         patch_size=arch['patch'], mlp_ratio=3, in_channels=3,
                         grid=side, img_size=arch['img_size'], num_classes=None)
    out = tool.convert_resmlp(state)
    assert not any(k.startswith('head.') for k in out)
    assert out['backbone.blocks.1.token_mix.weight'].shape == (side**2, side**2)


# --------------------------------------------------------------------------------
# bad inputs: one clear error each, nothing written
# --------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def small_state():
    return timm_small(64, 16).state_dict()


def test_missing_source(tmp_path, capsys):
    src = tmp_path / 'nowhere' / 'resmlp.pth'
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert 'does not exist' in err and str(src) in err
    assert not (tmp_path / 'dst.pth').exists()


def test_not_a_resmlp_state_dict_names_its_keys(tmp_path, capsys):
    src = tmp_path / 'vit.pth'
    torch.save({'cls_token': torch.zeros(1, 1, 8), 'pos_embed': torch.zeros(1, 5, 8),
                'patch_embed.projection.weight': torch.zeros(8, 3, 4, 4)}, src)
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert 'not a ResMLP state dict' in err
    assert "'stem.proj.weight'" in err and "'patch_embed.proj.weight'" in err
    assert "'cls_token'" in err and "'pos_embed'" in err  # the keys found
    assert 'Traceback' not in err
    assert not (tmp_path / 'dst.pth').exists()


def test_checkpoint_without_a_state_dict(tmp_path, capsys):
    src = tmp_path / 'odd.pth'
    torch.save({'epoch': 3, 'optimizer': {'lr': 0.1}}, src)
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert "a bare state dict or 'state_dict' or 'model'" in err
    assert "'epoch'" in err and "'optimizer'" in err and str(src) in err


def test_unmapped_key_is_an_error(tmp_path, capsys, small_state):
    src = tmp_path / 'extra.pth'
    state = OrderedDict(small_state)
    state['blocks.0.gate.weight'] = torch.zeros(3)
    torch.save(state, src)
    rc, _, err = run_main(capsys, src, tmp_path / 'dst.pth')
    assert rc == 1
    assert '1 keys are not mapped' in err and "'blocks.0.gate.weight'" in err
    assert not (tmp_path / 'dst.pth').exists()


def test_missing_tensor_is_an_error(small_state):
    state = OrderedDict(small_state)
    del state['blocks.1.ls2']
    with pytest.raises(tool.CheckpointError,
                       match=r"missing \['backbone.blocks.1.ls2'\]"):
        tool.convert_resmlp(state)


def test_non_square_token_grid_is_an_error(small_state):
    state = OrderedDict(small_state)
    for b in range(2):
        state[f'blocks.{b}.linear_tokens.weight'] = torch.zeros(6, 6)
    with pytest.raises(tool.CheckpointError, match=r'has shape \(6, 6\).*square grid'):
        tool.infer_resmlp_arch(state)


def test_destination_is_the_source(tmp_path, capsys, small_state):
    src = tmp_path / 'same.pth'
    torch.save(small_state, src)
    size = src.stat().st_size
    rc, _, err = run_main(capsys, src, src)
    assert rc == 1 and 'refusing to overwrite the source' in err
    assert src.stat().st_size == size
