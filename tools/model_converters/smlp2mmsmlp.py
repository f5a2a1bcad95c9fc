"""Convert an official sMLPNet checkpoint (microsoft/SPACH, e.g. ``smlp_s.pth``) to
an mmsmlp / mmpretrain ``ImageClassifier`` checkpoint.

    python tools/model_converters/smlp2mmsmlp.py SRC DST [--use-ema]

The source is a dict with ``model`` (and maybe ``model_ema``); it is read with
``torch.load(weights_only=True)`` only. The architecture (embed dims, depths, MLP
ratio, token grids) is inferred from the tensors. DST holds ``backbone.*`` (the
``SMLPNet`` backbone with ``out_indices=(last stage,)``: the final BatchNorm becomes
``backbone.norm3``) and ``head.fc.*`` (``LinearClsHead``), for::

    model = dict(type='ImageClassifier',
                 backbone=dict(type='SMLPNet', arch='small', out_indices=(3, )),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=1000, in_channels=768))

Trap handled here: the official ``proj_h`` mixes along the *width* and ``proh_w``
along the *height* (the code permutes before applying them), so they map to our
``mix_width`` and ``mix_height`` respectively, by behaviour rather than by name.
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import torch

from mmsmlp import __version__
from mmsmlp.utils import (CheckpointError, KeyRule, check_against_model,
                          conv1x1_to_linear,
                          load_state_source, rename_keys, save_converted_checkpoint)

_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'


def _indexed(state_dict: Mapping[str, torch.Tensor],
             pattern: str) -> Dict[int, torch.Tensor]:
    """``{index: tensor}`` of the keys matching ``pattern`` (one ``(\\d+)`` group)."""
    regex = re.compile(pattern)
    found = {}
    for key, tensor in state_dict.items():
        m = regex.fullmatch(key)
        if m:
            found[int(m.group(1))] = tensor
    return found


def _contiguous(indices, what: str) -> int:
    """Number of entries when ``indices`` are exactly 0..n-1, else an error."""
    n = len(indices)
    if n == 0 or sorted(indices) != list(range(n)):
        raise CheckpointError(f'the {what} indices are {sorted(indices)}; expected '
                              '0..n-1 without gaps: not an official sMLPNet '
                              'state dict')
    return n


def infer_smlpnet_arch(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of an official sMLPNet state dict, read from its tensor shapes.

    Stage boundaries come from the channel count of each block's depthwise conv
    ``token_mix.{b}.0.conv_merge.Conv.weight`` ``(C_i, 1, 3, 3)``: ``C`` in stage 0
    (the stem conv ``(C, 3, 4, 4)``) and doubled in every later stage.

    Returns:
        dict: ``embed_dims`` (C), ``depths`` (list), ``mlp_ratio`` (channel-MLP
        hidden / C; an int when whole), ``grids`` (token grid N of each stage's axial
        weights ``(N, N, 1, 1)``), ``img_size`` (4 * grids[0]), ``num_classes``
        (rows of ``mlp_head.0.weight``, or None) and ``blocks``: ``(stage, block)``
        of each global block index.
    """
    stems = _indexed(state_dict, r'to_patch_embedding\.(\d+)\.0\.weight')
    if 0 not in stems:
        raise CheckpointError(
            "no key 'to_patch_embedding.0.0.weight': this is not an official sMLPNet "
            f'state dict (its first keys: {list(state_dict)[:5]})')
    num_stages = _contiguous(stems, "'to_patch_embedding.{i}.0.weight'")
    stem = stems[0]
    if stem.dim() != 4 or tuple(stem.shape[2:]) != (4, 4):
        raise CheckpointError("'to_patch_embedding.0.0.weight' has shape "
                              f'{tuple(stem.shape)}; mmsmlp supports the 4x4 patch '
                              'stem (C, in_channels, 4, 4) only')
    embed_dims = stem.shape[0]

    dwconvs = _indexed(state_dict, r'token_mix\.(\d+)\.0\.conv_merge\.Conv\.weight')
    num_blocks = _contiguous(dwconvs, "'token_mix.{b}.0.conv_merge.Conv.weight'")
    depths: List[int] = []
    blocks = []
    for b in range(num_blocks):
        channels = dwconvs[b].shape[0]
        stage = len(depths) - 1
        if not depths or channels != embed_dims * 2**stage:
            stage += 1
            depths.append(0)
            if channels != embed_dims * 2**stage:
                raise CheckpointError(
                    f"'token_mix.{b}.0.conv_merge.Conv.weight' has {channels} "
                    f'channels; after {depths[:-1]} blocks, stage {stage} of an '
                    f'sMLPNet with embed_dims={embed_dims} has {embed_dims * 2**stage}')
        blocks.append((stage, depths[-1]))
        depths[-1] += 1
    if len(depths) != num_stages:
        raise CheckpointError(
            f'the blocks form {len(depths)} stages (depths {depths}) but there are '
            f'{num_stages} patch-embedding convs to_patch_embedding.*')
    for i in range(1, num_stages):
        want = (embed_dims * 2**i, embed_dims * 2**(i - 1), 2, 2)
        if tuple(stems[i].shape) != want:
            raise CheckpointError(f"'to_patch_embedding.{i}.0.weight' has shape "
                                  f'{tuple(stems[i].shape)}; expected {want}')

    hidden = _indexed(state_dict, r'channel_mix\.(\d+)\.2\.net\.0\.weight')
    ratios = set()
    for b in range(num_blocks):
        if b not in hidden:
            raise CheckpointError(f"missing key 'channel_mix.{b}.2.net.0.weight'")
        ratios.add(hidden[b].shape[0] / hidden[b].shape[1])
    if len(ratios) != 1:
        raise CheckpointError(f'the channel MLPs have different ratios {sorted(ratios)}'
                              '; SMLPNet uses one mlp_ratio for all blocks')
    mlp_ratio = ratios.pop()
    mlp_ratio = int(mlp_ratio) if float(mlp_ratio).is_integer() else mlp_ratio

    axial = _indexed(state_dict, r'token_mix\.(\d+)\.1\.proj_h\.weight')
    grids = []
    for i in range(num_stages):
        b = blocks.index((i, 0))
        if b not in axial:
            raise CheckpointError(f"missing key 'token_mix.{b}.1.proj_h.weight'")
        grids.append(int(axial[b].shape[0]))
    head = state_dict.get('mlp_head.0.weight')
    return dict(embed_dims=embed_dims, depths=depths, mlp_ratio=mlp_ratio,
                grids=grids, img_size=grids[0] * 4,
                num_classes=None if head is None else int(head.shape[0]),
                blocks=blocks)


def smlpnet_rules(arch: dict) -> List[KeyRule]:
    """Renaming rules official -> mmsmlp for an architecture of
    :func:`infer_smlpnet_arch` (``arch['blocks']`` maps global block indices)."""
    blocks = arch['blocks']
    last = len(arch['depths']) - 1

    def block(suffix: str):
        def target(m: 're.Match') -> str:
            b = int(m.group(1))
            if b >= len(blocks):
                raise CheckpointError(f'key {m.group(0)!r} belongs to block {b}, but '
                                      f'the checkpoint has {len(blocks)} blocks '
                                      '(counted from token_mix.*.0.conv_merge.Conv)')
            i, j = blocks[b]
            return f'backbone.stages.{i}.blocks.{j}.' + suffix.format(*m.groups()[1:])
        return target

    tm, cm = r'token_mix\.(\d+)\.', r'channel_mix\.(\d+)\.'
    return [
        KeyRule(r'to_patch_embedding\.0\.0\.weight',
                'backbone.patch_embed.projection.weight'),
        KeyRule(r'to_patch_embedding\.(\d+)\.0\.weight',
                r'backbone.stages.\1.downsample.projection.weight'),
        KeyRule(tm + r'0\.conv_merge\.BN\.' + _BN, block('local_norm.{}')),
        KeyRule(tm + r'0\.conv_merge\.Conv\.weight', block('local_mix.weight')),
        KeyRule(tm + r'1\.BN\.' + _BN, block('global_norm.{}')),
        # by behaviour: official proj_h mixes along W, proh_w along H
        KeyRule(tm + r'1\.proj_h\.weight', block('sparse_mlp.mix_width.weight'),
                conv1x1_to_linear),
        KeyRule(tm + r'1\.proj_h\.bias', block('sparse_mlp.mix_width.bias')),
        KeyRule(tm + r'1\.proh_w\.weight', block('sparse_mlp.mix_height.weight'),
                conv1x1_to_linear),
        KeyRule(tm + r'1\.proh_w\.bias', block('sparse_mlp.mix_height.bias')),
        # official concat [x, proj_h(x), proh_w(x)] = our [identity, width, height]
        KeyRule(tm + r'1\.fuse\.weight', block('sparse_mlp.fuse.weight'),
                conv1x1_to_linear),
        KeyRule(cm + r'1\.(weight|bias)', block('channel_norm.{}')),
        KeyRule(cm + r'2\.net\.0\.(weight|bias)', block('channel_mlp.fc1.{}')),
        KeyRule(cm + r'2\.net\.3\.(weight|bias)', block('channel_mlp.fc2.{}')),
        KeyRule(r'batch_norm\.' + _BN, rf'backbone.norm{last}.\1'),
        KeyRule(r'mlp_head\.0\.(weight|bias)', r'head.fc.\1'),
    ]


def _check_against_backbone(converted: Mapping[str, torch.Tensor], arch: dict):
    """Every tensor of an ``SMLPNet`` of this arch is present with its shape."""
    from mmsmlp.models.backbones.smlpnet import SMLPNet
    mine = {k: arch[k] for k in ('embed_dims', 'depths', 'mlp_ratio')}
    net = SMLPNet(arch=mine, img_size=arch['img_size'],
                  out_indices=(len(arch['depths']) - 1, ))
    check_against_model(converted, net, what=f'SMLPNet(arch={mine})')


def convert_smlpnet(state_dict: Mapping[str, torch.Tensor],
                    check: bool = True) -> 'OrderedDict[str, torch.Tensor]':
    """Official sMLPNet state dict -> mmpretrain ``ImageClassifier`` state dict.

    Shapes: 1x1-conv weights become Linear weights, ``proj_h``/``proh_w``
    ``(N, N, 1, 1)`` -> ``mix_width``/``mix_height`` ``(N, N)``, ``fuse``
    ``(C, 3C, 1, 1)`` -> ``(C, 3C)``; every other tensor keeps its shape.

    Args:
        state_dict (Mapping[str, Tensor]): the official ``model`` (or
            ``model_ema``) state dict.
        check (bool): verify that the result fills an ``SMLPNet`` of the inferred
            arch exactly (names and shapes). Defaults to True.

    Returns:
        OrderedDict[str, Tensor]: ``backbone.*`` and ``head.fc.*`` tensors.

    Raises:
        CheckpointError: unknown or unmapped keys (listed), inconsistent shapes.
    """
    arch = infer_smlpnet_arch(state_dict)
    converted = rename_keys(state_dict, smlpnet_rules(arch),
                            source='official sMLPNet state dict')
    if check:
        _check_against_backbone(converted, arch)
    return converted


def _arch_config(arch: dict) -> str:
    """The ``arch=`` argument of SMLPNet for ``arch``: a preset name if one fits."""
    from mmsmlp.models.backbones.smlpnet import SMLPNet
    mine = {k: arch[k] for k in ('embed_dims', 'depths', 'mlp_ratio')}
    for name in ('tiny', 'tiny-a2', 'small', 'base'):
        if SMLPNet.arch_zoo[name] == mine:
            return repr(name)
    return repr(mine)


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(
        description='Convert an official sMLPNet (microsoft/SPACH) checkpoint to '
        'an mmsmlp / mmpretrain ImageClassifier checkpoint (backbone.*, head.fc.*).')
    parser.add_argument('src', help='official checkpoint, e.g. smlp_s.pth')
    parser.add_argument('dst', help='output file (folders are created)')
    parser.add_argument('--use-ema', action='store_true',
                        help="convert the EMA weights ('model_ema') instead of 'model'")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.use_ema:
            key, state = load_state_source(
                args.src, keys=('model_ema', ),
                hint="--use-ema needs the EMA weights; run without --use-ema to "
                "convert 'model'")
        else:
            key, state = load_state_source(args.src, keys=('model', 'model_ema'))
        arch = infer_smlpnet_arch(state)
        converted = convert_smlpnet(state)
        meta = dict(
            converter='tools/model_converters/smlp2mmsmlp.py',
            mmsmlp_version=__version__,
            source=osp.basename(args.src),
            source_key=key,
            arch={k: arch[k] for k in ('embed_dims', 'depths', 'mlp_ratio')},
            img_size=arch['img_size'],
            num_classes=arch['num_classes'])
        save_converted_checkpoint(converted, args.dst, meta=meta, src=args.src)
    except (OSError, CheckpointError) as err:  # missing/unreadable/bad file
        print(f'smlp2mmsmlp: error: {err}', file=sys.stderr)
        return 1
    print(f"Read {len(state)} tensors from '{key}' of {args.src}")
    print(f"arch: embed_dims={arch['embed_dims']}, depths={arch['depths']}, "
          f"mlp_ratio={arch['mlp_ratio']}, token grids={arch['grids']} "
          f"(img_size {arch['img_size']}), num_classes={arch['num_classes']}")
    print(f'Wrote {len(converted)} tensors to {args.dst}')
    last = len(arch['depths']) - 1
    print(f"Use: backbone=dict(type='SMLPNet', arch={_arch_config(arch)}, "
          f"out_indices=({last}, )), neck=dict(type='GlobalAveragePooling'), "
          f"head=dict(type='LinearClsHead', num_classes={arch['num_classes']}, "
          f"in_channels={arch['embed_dims'] * 2**last})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
