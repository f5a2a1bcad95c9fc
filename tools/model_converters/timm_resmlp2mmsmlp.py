"""Convert a ResMLP checkpoint (timm's ``resmlp_*`` state dict, or the official
facebookresearch/deit ``resmlp_*.pth``) to an mmsmlp / mmpretrain
``ImageClassifier`` checkpoint.

    python tools/model_converters/timm_resmlp2mmsmlp.py SRC DST

SRC is a bare state dict (e.g. ``torch.save(timm_model.state_dict(), SRC)``) or a
dict holding it under ``'state_dict'`` or ``'model'`` (the official files); it is
read with ``torch.load(weights_only=True)`` only. Both key layouts are accepted:
timm's (``stem.proj``, ``linear_tokens``, ``mlp_channels``, ``ls1``, Affine
``alpha`` of shape ``(1, 1, C)``) and the official one (``patch_embed.proj``,
``attn``, ``mlp``, ``gamma_1``, ``alpha`` of shape ``(C,)``). The architecture
(embed dims, depth, patch size, MLP ratio, token grid) is inferred from the
tensors. DST holds ``backbone.*`` (the ``ResMLP`` backbone) and ``head.fc.*``
(``LinearClsHead``), for::

    model = dict(type='ImageClassifier',
                 backbone=dict(type='ResMLP', arch='s12'),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=1000, in_channels=384))

which computes the same logits as the source model at its resolution.
"""
import argparse
import math
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import torch

from mmsmlp import __version__
from mmsmlp.utils import (CheckpointError, KeyRule, check_against_model,
                          load_state_source, rename_keys, save_converted_checkpoint)

#: names of the parts in the two source layouts
LAYOUTS = {
    'timm': dict(stem='stem.proj', tokens='linear_tokens', mlp='mlp_channels',
                 ls1='ls1', ls2='ls2'),
    'official': dict(stem='patch_embed.proj', tokens='attn', mlp='mlp',
                     ls1='gamma_1', ls2='gamma_2'),
}
ARCH_KEYS = ('embed_dims', 'num_blocks', 'patch_size', 'mlp_ratio')


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``'timm'`` or ``'official'``, from the name of the patch projection."""
    for layout, names in LAYOUTS.items():
        if names['stem'] + '.weight' in state_dict:
            return layout
    raise CheckpointError(
        'not a ResMLP state dict: it has neither '
        + ' nor '.join(repr(n['stem'] + '.weight') for n in LAYOUTS.values())
        + f' (its first keys: {list(state_dict)[:8]})')


def _affine_to_vector(tensor: torch.Tensor, key: str = '') -> torch.Tensor:
    """Affine ``alpha`` / ``beta``: ``(1, 1, C)`` (timm) or ``(C,)`` -> ``(C,)``."""
    if tensor.dim() not in (1, 3) or tensor.numel() != tensor.shape[-1]:
        raise CheckpointError(f'key {key!r} has shape {tuple(tensor.shape)}; an '
                              'Affine parameter (C,) or (1, 1, C) was expected')
    return tensor.reshape(-1)


def infer_resmlp_arch(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of a ResMLP state dict, read from its tensor shapes.

    Returns:
        dict: ``layout`` (``'timm'`` / ``'official'``), ``embed_dims``,
        ``num_blocks``, ``patch_size``, ``mlp_ratio`` (an int when whole),
        ``in_channels``, ``grid`` (patches per side of the token-mixing weights),
        ``img_size`` (``grid * patch_size``) and ``num_classes`` (None without a
        classifier).
    """
    layout = detect_layout(state_dict)
    names = LAYOUTS[layout]
    stem = state_dict[names['stem'] + '.weight']
    if stem.dim() != 4 or stem.shape[2] != stem.shape[3]:
        raise CheckpointError(f"{names['stem'] + '.weight'!r} has shape "
                              f'{tuple(stem.shape)}; a square patch convolution '
                              '(C, in_channels, p, p) was expected')
    embed_dims, in_channels, patch = (int(s) for s in stem.shape[:3])

    regex = re.compile(rf"blocks\.(\d+)\.{re.escape(names['tokens'])}\.weight")
    mixing: Dict[int, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        m = regex.fullmatch(key)
        if m:
            mixing[int(m.group(1))] = tensor
    num_blocks = len(mixing)
    if num_blocks == 0 or sorted(mixing) != list(range(num_blocks)):
        raise CheckpointError(
            f"the token-mixing keys 'blocks.{{i}}.{names['tokens']}.weight' have "
            f'indices {sorted(mixing)}; expected 0..n-1 without gaps: not a ResMLP '
            'state dict')
    tokens = mixing[0]
    side = math.isqrt(int(tokens.shape[0])) if tokens.dim() == 2 else 0
    if tokens.dim() != 2 or tokens.shape[0] != tokens.shape[1] \
            or side * side != tokens.shape[0]:
        raise CheckpointError(f"'blocks.0.{names['tokens']}.weight' has shape "
                              f'{tuple(tokens.shape)}; a (N, N) mixing over a '
                              'square grid of N patches was expected')
    fc1 = state_dict.get(f"blocks.0.{names['mlp']}.fc1.weight")
    if fc1 is None or fc1.dim() != 2:
        raise CheckpointError(f"missing key 'blocks.0.{names['mlp']}.fc1.weight'")
    mlp_ratio = fc1.shape[0] / embed_dims
    mlp_ratio = int(mlp_ratio) if float(mlp_ratio).is_integer() else mlp_ratio
    head = state_dict.get('head.weight')
    return dict(layout=layout, embed_dims=embed_dims, num_blocks=num_blocks,
                patch_size=patch, mlp_ratio=mlp_ratio, in_channels=in_channels,
                grid=side, img_size=side * patch,
                num_classes=None if head is None else int(head.shape[0]))


def resmlp_rules(layout: str) -> List[KeyRule]:
    """Renaming rules ``layout`` -> mmsmlp ``ImageClassifier``."""
    n = {k: re.escape(v) for k, v in LAYOUTS[layout].items()}
    blk = r'blocks\.(\d+)\.'
    return [
        KeyRule(rf"{n['stem']}\.(weight|bias)", r'backbone.patch_embed.projection.\1'),
        KeyRule(blk + r'norm([12])\.(alpha|beta)', r'backbone.blocks.\1.norm\2.\3',
                _affine_to_vector),
        KeyRule(blk + rf"{n['tokens']}\.(weight|bias)",
                r'backbone.blocks.\1.token_mix.\2'),
        KeyRule(blk + rf"{n['mlp']}\.fc([12])\.(weight|bias)",
                r'backbone.blocks.\1.channel_mlp.fc\2.\3'),
        KeyRule(blk + n['ls1'], r'backbone.blocks.\1.ls1'),
        KeyRule(blk + n['ls2'], r'backbone.blocks.\1.ls2'),
        KeyRule(r'norm\.(alpha|beta)', r'backbone.norm.\1', _affine_to_vector),
        KeyRule(r'head\.(weight|bias)', r'head.fc.\1'),
    ]


def _backbone_arch(arch: dict) -> dict:
    return {k: arch[k] for k in ARCH_KEYS}


def _check_against_backbone(converted: Mapping[str, torch.Tensor], arch: dict):
    """Every tensor of a ``ResMLP`` of this arch is present with its shape."""
    from mmsmlp.models.backbones.resmlp import ResMLP
    net = ResMLP(arch=_backbone_arch(arch), img_size=arch['img_size'],
                 in_channels=arch['in_channels'])
    check_against_model(converted, net, what=f'ResMLP(arch={_backbone_arch(arch)})')


def convert_resmlp(state_dict: Mapping[str, torch.Tensor],
                   check: bool = True) -> 'OrderedDict[str, torch.Tensor]':
    """ResMLP state dict (timm or official layout) -> ``ImageClassifier`` state dict.

    Shapes: Affine ``alpha`` / ``beta`` become ``(C,)``; every other tensor keeps
    its shape (the token-mixing ``Linear(N, N)`` weight is the ``(N, N)`` weight
    of ``token_mix``), and each ``token_mix.reference_grid`` is added: the square
    grid ``(sqrt(N), sqrt(N))`` the weights mix.

    Raises:
        CheckpointError: not a ResMLP state dict, unmapped keys (listed),
            inconsistent shapes.
    """
    arch = infer_resmlp_arch(state_dict)
    converted = rename_keys(state_dict, resmlp_rules(arch['layout']),
                            source=f"ResMLP state dict ({arch['layout']} layout)")
    # ResMLP's patch grid is square: recorded so that a model of another grid
    # resizes the token mixing from the right one
    for i in range(arch['num_blocks']):
        converted[f'backbone.blocks.{i}.token_mix.reference_grid'] = torch.tensor(
            [arch['grid'], arch['grid']])
    if check:
        _check_against_backbone(converted, arch)
    return converted


def _arch_config(arch: dict) -> str:
    """The ``arch=`` argument of ResMLP for ``arch``: a preset name if one fits."""
    from mmsmlp.models.backbones.resmlp import ResMLP
    mine = _backbone_arch(arch)
    for name, preset in ResMLP.arch_zoo.items():
        if {k: preset[k] for k in ARCH_KEYS} == mine:
            return repr(name)
    return repr(mine)


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(
        description='Convert a ResMLP checkpoint (timm state dict or official '
        'facebookresearch/deit file) to an mmsmlp / mmpretrain ImageClassifier '
        'checkpoint (backbone.*, head.fc.*).')
    parser.add_argument('src', help='source file, e.g. resmlp_12_224.pth')
    parser.add_argument('dst', help='output file (folders are created)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        key, state = load_state_source(
            args.src, keys=(None, 'state_dict', 'model'),
            hint='Save the model with torch.save(model.state_dict(), path)')
        arch = infer_resmlp_arch(state)
        converted = convert_resmlp(state)
        meta = dict(
            converter='tools/model_converters/timm_resmlp2mmsmlp.py',
            mmsmlp_version=__version__,
            source=osp.basename(args.src),
            source_key=key,
            source_layout=arch['layout'],
            arch=_backbone_arch(arch),
            img_size=arch['img_size'],
            num_classes=arch['num_classes'])
        save_converted_checkpoint(converted, args.dst, meta=meta, src=args.src)
    except (OSError, CheckpointError) as err:  # missing/unreadable/bad file
        print(f'timm_resmlp2mmsmlp: error: {err}', file=sys.stderr)
        return 1
    where = 'the top-level state dict' if key is None else repr(key)
    print(f"Read {len(state)} tensors ({arch['layout']} layout) from {where} of "
          f'{args.src}')
    print(f"arch: embed_dims={arch['embed_dims']}, num_blocks={arch['num_blocks']}, "
          f"patch_size={arch['patch_size']}, mlp_ratio={arch['mlp_ratio']}, token "
          f"grid={arch['grid']}x{arch['grid']} (img_size {arch['img_size']}), "
          f"num_classes={arch['num_classes']}")
    print(f'Wrote {len(converted)} tensors to {args.dst}')
    extra = ''
    if arch['img_size'] != 224:
        extra += f", img_size={arch['img_size']}"
    if arch['in_channels'] != 3:
        extra += f", in_channels={arch['in_channels']}"
    head = 'None (no classifier in the source)' if arch['num_classes'] is None \
        else (f"dict(type='LinearClsHead', num_classes={arch['num_classes']}, "
              f"in_channels={arch['embed_dims']})")
    print(f"Use: backbone=dict(type='ResMLP', arch={_arch_config(arch)}{extra}), "
          f"neck=dict(type='GlobalAveragePooling'), head={head}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
