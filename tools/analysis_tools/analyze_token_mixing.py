"""Draw the learned token-mixing matrices of an mmsmlp backbone, and their sparsity.

    python tools/analysis_tools/analyze_token_mixing.py CONFIG CHECKPOINT \\
        --out-dir DIR [--threshold 0.01] [--query center corner 3,5] \\
        [--cfg-options KEY=VALUE ...]

CONFIG is any config of mmsmlp (classifier, detector or segmentor; its
``default_scope`` says which); the tool builds its model, loads CHECKPOINT into
``model.backbone`` with mmengine's ``load_checkpoint`` (``torch.load`` with
``weights_only=True``; full-model checkpoints with ``backbone.`` keys and
backbone-only ones both work) and finds the learned token-mixing matrices as the
:class:`~mmsmlp.models.utils.TokenMixing` modules of the backbone:

* **SMLPNet**: every sMLP block has two axial matrices, ``mix_height`` and
  ``mix_width`` (``N x N`` over the rows / columns of the stage's token grid);
* **ResMLP**: every block has one patch-mixing matrix ``A`` (``token_mix``,
  ``HW x HW`` over the patches). Besides the full matrix, the row of a query patch
  (``--query``: ``center``, ``corner`` (top-left) or ``ROW,COL``) is drawn on the
  ``H x W`` patch grid: the weights with which that output patch reads every input
  patch; and the mean of ``A[q, q + d]`` over the query patches ``q`` for every
  offset ``d``: a convolution-like (Toeplitz) matrix is one kernel of offsets;
* **S2MLP** has no learned token mixing (patches communicate through a
  parameter-free spatial shift): the tool says so and exits with status 0 without
  writing anything (nothing to draw is not an error of the command).

The matrices are drawn as the checkpoint holds them (at the token grid they were
trained for, even when the config's ``img_size`` is another one).

Sparsity (as in the ResMLP paper's analysis): the share of the entries of a matrix
with ``|w| < threshold * max|w|`` (``--threshold`` is relative to the largest
magnitude of that matrix; default 0.01), per layer, for the token-mixing matrices
and, for comparison, the other ``nn.Linear`` weights of the same block: the
channel MLP (ResMLP's ``B`` = ``channel_mlp.fc1`` and ``C`` = ``channel_mlp.fc2``;
sMLPNet's channel MLP and its ``sparse_mlp.fuse``).

Files written to ``--out-dir``:

* ``layer{i:02d}_{block}.png``: one figure per block with token mixing (``i`` counts
  those blocks from 0; ``block`` is the block's module name with ``_`` for ``.``,
  e.g. ``layer00_blocks_0.png``, ``layer03_stages_1_blocks_0.png``);
* ``overview_matrices.png``: every token-mixing matrix, small, in one figure;
* ``overview_queries.png`` (2-D grids: ResMLP): the first ``--query`` of every layer;
* ``sparsity.png``: sparsity per layer, one line per weight of the block;
* ``sparsity.json`` / ``sparsity.csv``: the numbers of that plot, with the
  checkpoint key, shape and ``max|w|`` of every matrix.

Exit status: 0 on success and for S2MLP; 1 with a message naming the file for a
missing config or checkpoint, an unreadable or unsafe checkpoint, a checkpoint of
another architecture, or a backbone without learned token mixing; 2 for bad
arguments.
"""
import argparse
import csv
import json
import math
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

PROG = 'tools/analysis_tools/analyze_token_mixing.py'
#: Backbones of mmsmlp designed without learned token mixing.
NO_TOKEN_MIXING = {
    'S2MLP': 'S2-MLP mixes patches with a parameter-free spatial shift (four '
             'channel groups moved by one patch); it has no learned token-mixing '
             'matrix to draw',
}
#: ResMLP paper notation of a block's weights (legends only).
PAPER_NAMES = {
    'ResMLP': {'token_mix': 'A', 'channel_mlp.fc1': 'B', 'channel_mlp.fc2': 'C'},
}
REVISE_KEYS = [(r'^module\.', ''), (r'^backbone\.', '')]


class ToolError(Exception):
    """A failure the tool reports as one line, without a traceback."""


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file of the model')
    parser.add_argument('checkpoint', help='checkpoint file of that model')
    parser.add_argument('--out-dir', required=True,
                        help='folder for the pictures and sparsity files (created)')
    parser.add_argument('--threshold', type=float, default=0.01,
                        help='an entry counts as ~0 when |w| < threshold * max|w| '
                        'of its matrix (default 0.01)')
    parser.add_argument('--query', nargs='+', default=['center', 'corner'],
                        help='query patches of 2-D token grids (ResMLP): center, '
                        'corner (top-left) or ROW,COL (default: center corner)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. '
                        'model.backbone.img_size=384')
    args = parser.parse_args(argv)
    if not 0 < args.threshold < 1:
        parser.error(f'--threshold {args.threshold} must be in (0, 1)')
    for q in args.query:
        if q not in ('center', 'corner') and not re.fullmatch(r'\d+,\d+', q):
            parser.error(f'--query {q!r} must be center, corner or ROW,COL')
    return args


# ----------------------------------------------------------------------- model
def build_model(cfg):
    """The config's model, built with the registry of its ``default_scope``."""
    from mmsmlp.utils.complexity import build_from_config
    return build_from_config(cfg)[0]


def enclosing_block(name: str, modules: Dict[str, 'object']) -> str:
    """The nearest ancestor of module ``name`` that is an item of a ModuleList
    (a block of the backbone); the parent module if there is none."""
    import torch.nn as nn
    parts = name.split('.')
    for i in range(len(parts) - 1, 0, -1):
        prefix = '.'.join(parts[:i])
        parent = '.'.join(parts[:i - 1])
        if isinstance(modules.get(parent), nn.ModuleList):
            return prefix
    return '.'.join(parts[:-1])


def find_layers(backbone) -> 'OrderedDict[str, dict]':
    """Blocks with token mixing, in module order: ``{block: {'mixing': [(role,
    module name, TokenMixing)], 'linear': [(role, module name)]}}``; a role is the
    module name relative to the block (``token_mix``, ``sparse_mlp.mix_height``,
    ``channel_mlp.fc1``, ...)."""
    import torch.nn as nn

    from mmsmlp.models.utils import TokenMixing
    modules = dict(backbone.named_modules())
    layers = OrderedDict()
    for name, module in backbone.named_modules():
        if not isinstance(module, TokenMixing):
            continue
        block = enclosing_block(name, modules)
        layer = layers.setdefault(block, dict(mixing=[], linear=[]))
        layer['mixing'].append((_relative(name, block), name, module))
    for block, layer in layers.items():
        root = modules[block] if block else backbone
        for sub, module in root.named_modules():
            if isinstance(module, nn.Linear):
                full = f'{block}.{sub}' if block else sub
                layer['linear'].append((sub, full))
    return layers


def _relative(name: str, block: str) -> str:
    return name[len(block) + 1:] if block else name


# ------------------------------------------------------------------ checkpoint
def load_weights(backbone, path: str) -> Dict[str, tuple]:
    """Load ``path`` into ``backbone`` with mmengine's ``load_checkpoint``.

    Returns:
        dict: ``{backbone key: (checkpoint key, tensor)}`` for every entry of the
        checkpoint's state dict (``module.`` and ``backbone.`` prefixes removed
        from the backbone keys).
    """
    from mmengine.runner import load_checkpoint

    try:
        ckpt = load_checkpoint(backbone, path, map_location='cpu', strict=False,
                               logger='silent', revise_keys=REVISE_KEYS)
    except ValueError as err:
        # the backbone's load hooks: keys or shapes of another architecture
        raise ToolError(f'checkpoint {path!r} does not fit the '
                        f'{type(backbone).__name__} of the config: {err}') from err
    except Exception as err:  # noqa: B902  unreadable, truncated or unsafe file
        from mmsmlp.utils import read_checkpoint
        try:
            read_checkpoint(path)  # raises the clear error naming the file
        except Exception as clear:  # noqa: B902
            raise ToolError(str(clear)) from err
        raise ToolError(f'cannot load checkpoint {path!r}: {type(err).__name__}: '
                        f'{err}') from err
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    revised = {}
    for original, value in state.items():
        key = original
        for pattern, repl in REVISE_KEYS:
            key = re.sub(pattern, repl, key)
        revised[key] = (original, value)
    return revised


def checkpoint_matrix(state: dict, module_name: str, path: str,
                      backbone_type: str):
    """``(checkpoint key, float weight)`` of ``module_name`` as the checkpoint
    stores it."""
    key = f'{module_name}.weight'
    if key not in state:
        first = [k for k, _ in list(state.values())[:4]]
        raise ToolError(
            f'checkpoint {path!r} has no weight {key!r} (nor backbone.{key}) that '
            f'the {backbone_type} of the config needs: it is a checkpoint of another '
            f'model or architecture (its first keys: {first})')
    original, weight = state[key]
    if not hasattr(weight, 'dim') or weight.dim() != 2:
        raise ToolError(f'checkpoint key {key!r} of {path!r} is not a matrix '
                        f'(shape {tuple(getattr(weight, "shape", ()))})')
    return original, weight.detach().float().cpu()


def mixing_grid(module, weight) -> Tuple[int, ...]:
    """Token grid of a checkpoint matrix: the module's reference grid, or the grid
    of the same aspect ratio with as many tokens when the checkpoint was trained at
    another size."""
    if tuple(weight.shape) == tuple(module.weight.shape):
        return tuple(module.grid_size)
    grid = module._source_grid(weight.shape[0])
    return tuple(grid) if grid is not None else (weight.shape[0], )


# -------------------------------------------------------------------- numbers
def sparsity(weight, threshold: float) -> Tuple[float, float]:
    """``(share of entries with |w| < threshold * max|w|, max|w|)``; an all-zero
    matrix is entirely sparse."""
    mag = weight.abs()
    top = float(mag.max()) if mag.numel() else 0.
    if top == 0:
        return 1.0, 0.
    return float((mag < threshold * top).double().mean()), top


def query_index(query: str, grid: Sequence[int]) -> Tuple[int, int]:
    h, w = grid
    if query == 'center':
        return h // 2, w // 2
    if query == 'corner':
        return 0, 0
    r, c = (int(v) for v in query.split(','))
    if not (0 <= r < h and 0 <= c < w):
        raise ToolError(f'--query {query} is outside the {h} x {w} patch grid')
    return r, c


def offset_profile(weight, grid: Sequence[int]):
    """Mean of ``weight[q, q + d]`` over the query tokens ``q`` for every offset
    ``d`` (input minus output position): ``(2h - 1, 2w - 1)`` for a 2-D grid,
    ``(2n - 1,)`` for a 1-D one; index ``h - 1`` (``n - 1``) is offset 0."""
    import torch
    dims = list(grid)
    n = math.prod(dims)
    idx = torch.arange(n)
    coords = []
    for size in reversed(dims):
        coords.append(idx % size)
        idx = idx // size
    coords = coords[::-1]
    flat = torch.zeros(n, n, dtype=torch.long)
    for axis, (c, size) in enumerate(zip(coords, dims)):
        offset = c[None, :] - c[:, None] + size - 1
        stride = math.prod(2 * d - 1 for d in dims[axis + 1:])
        flat += offset * stride
    length = math.prod(2 * d - 1 for d in dims)
    sums = torch.zeros(length, dtype=torch.float64).index_add_(
        0, flat.reshape(-1), weight.reshape(-1).double())
    counts = torch.zeros(length, dtype=torch.float64).index_add_(
        0, flat.reshape(-1), torch.ones(n * n, dtype=torch.float64))
    return (sums / counts).reshape([2 * d - 1 for d in dims]).float()


# ------------------------------------------------------------------- drawings
def _matrix_panel(ax, fig, data, title, xlabel=None, ylabel=None, extent=None):
    lim = float(abs(data).max()) or 1.
    im = ax.imshow(data, cmap='RdBu_r', vmin=-lim, vmax=lim,
                   interpolation='nearest', extent=extent)
    ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)


def draw_layer(path: str, title: str, mixings: List[dict],
               queries: Sequence[str]):
    """One figure per block: for every token mixing, a row with the matrix, the
    query rows on the grid (2-D grids) and the mean weight per offset."""
    import matplotlib.pyplot as plt
    rows = []
    for m in mixings:
        w, grid = m['weight'].numpy(), m['grid']
        label = m['label']
        panels = [('matrix', dict(
            data=w, title=f'{label}: {w.shape[0]} x {w.shape[1]}',
            xlabel='input token', ylabel='output token'))]
        if len(grid) == 2:
            for q in queries:
                r, c = query_index(q, grid)
                row = w[r * grid[1] + c].reshape(grid)
                panels.append(('query', dict(
                    data=row, point=(r, c),
                    title=f'{label}: output patch ({r}, {c}) reads',
                    xlabel='input column', ylabel='input row')))
            prof = offset_profile(m['weight'], grid).numpy()
            h, w_ = grid[0] - 1, grid[1] - 1
            panels.append(('matrix', dict(
                data=prof, title=f'{label}: mean weight per offset',
                xlabel='column offset (input - output)',
                ylabel='row offset (input - output)',
                extent=(-w_ - .5, w_ + .5, h + .5, -h - .5))))
        elif len(grid) == 1:
            prof = offset_profile(m['weight'], grid).numpy()
            panels.append(('profile', dict(data=prof,
                                           title=f'{label}: mean w[i, i + d]')))
        rows.append(panels)
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, squeeze=False,
                             figsize=(3.6 * ncols, 3.4 * len(rows)))
    for r, panels in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(panels):
                ax.axis('off')
                continue
            kind, p = panels[c]
            if kind == 'profile':
                d = p['data']
                half = (len(d) - 1) // 2
                ax.plot(range(-half, half + 1), d, lw=1)
                ax.axhline(0, color='0.6', lw=0.5)
                ax.set_title(p['title'], fontsize=9)
                ax.set_xlabel('offset d (input - output)', fontsize=8)
                ax.tick_params(labelsize=7)
                continue
            _matrix_panel(ax, fig, p['data'], p['title'], p.get('xlabel'),
                          p.get('ylabel'), p.get('extent'))
            if kind == 'query':
                qr, qc = p['point']
                ax.plot([qc], [qr], marker='s', mfc='none', mec='k', ms=6)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_overview(path: str, title: str, panels: List[Tuple[str, 'object']],
                  point: Optional[List[Tuple[int, int]]] = None):
    import matplotlib.pyplot as plt
    ncols = min(6, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(2.4 * ncols, 2.4 * nrows + 0.6))
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.axis('off')
            continue
        label, data = panels[i]
        lim = float(abs(data).max()) or 1.
        ax.imshow(data, cmap='RdBu_r', vmin=-lim, vmax=lim,
                  interpolation='nearest')
        if point is not None:
            ax.plot([point[i][1]], [point[i][0]], marker='s', mfc='none', mec='k',
                    ms=4)
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_sparsity(path: str, title: str, roles: List[str], labels: Dict[str, str],
                  mixing_roles: set, table: List[dict]):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    reds = plt.get_cmap('Reds')
    blues = plt.get_cmap('Blues')
    n_mix = max(1, len([r for r in roles if r in mixing_roles]))
    n_other = max(1, len(roles) - n_mix)
    i_mix = i_other = 0
    for role in roles:
        xs = [row['layer'] for row in table if role in row['weights']]
        ys = [100 * row['weights'][role]['sparsity'] for row in table
              if role in row['weights']]
        if role in mixing_roles:
            color = reds(0.85 - 0.35 * i_mix / n_mix)
            style, i_mix = '-', i_mix + 1
        else:
            color = blues(0.85 - 0.45 * i_other / n_other)
            style, i_other = '--', i_other + 1
        ax.plot(xs, ys, style, marker='o', ms=3, color=color,
                label=labels.get(role, role))
    ax.set_xlabel('layer (block with token mixing)')
    ax.set_ylabel('sparsity (%)')
    ax.set_ylim(0, 100)
    if table:
        ax.set_xticks(range(len(table)) if len(table) <= 24
                      else range(0, len(table), max(1, len(table) // 12)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------- main
def analyze(args) -> int:
    """Run the tool; returns the exit status (errors raise :class:`ToolError`)."""
    from mmsmlp.engine.launch import ConfigError, load_config
    try:
        cfg = load_config(args.config, args.cfg_options)
    except ConfigError as err:
        raise ToolError(str(err)) from err
    if not osp.isfile(args.checkpoint):
        raise ToolError(f'checkpoint file {args.checkpoint!r} does not exist')
    try:
        model = build_model(cfg)
    except Exception as err:  # noqa: B902  bad model settings in the config
        raise ToolError(f'cannot build the model of {args.config!r}: '
                        f'{type(err).__name__}: {err}') from err
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        raise ToolError(f'the model of {args.config!r} ({type(model).__name__}) has '
                        'no backbone')
    btype = type(backbone).__name__
    layers = find_layers(backbone)
    if not layers:
        if btype in NO_TOKEN_MIXING:
            print(f'{btype} (config {args.config}): nothing to draw. '
                  f'{NO_TOKEN_MIXING[btype]}. No file was written.')
            return 0
        raise ToolError(f'the backbone of {args.config!r} ({btype}) has no learned '
                        'token-mixing matrices (TokenMixing modules); the tool '
                        'serves SMLPNet and ResMLP')

    state = load_weights(backbone, args.checkpoint)

    import matplotlib
    matplotlib.use('Agg')
    from mmengine.utils import mkdir_or_exist

    names = PAPER_NAMES.get(btype, {})
    roles, mixing_roles, table, figures = [], set(), [], []
    overview, queries_overview, query_points = [], [], []
    resized = []
    mkdir_or_exist(args.out_dir)
    for index, (block, layer) in enumerate(layers.items()):
        row = dict(layer=index, block=block, weights=OrderedDict())
        mixings = []
        for role, name, module in layer['mixing']:
            key, weight = checkpoint_matrix(state, name, args.checkpoint, btype)
            grid = mixing_grid(module, weight)
            if tuple(weight.shape) != tuple(module.weight.shape):
                resized.append(f'{name}: checkpoint grid {grid}, config grid '
                               f'{tuple(module.grid_size)}')
            label = f'{names[role]} ({role})' if role in names else role
            mixings.append(dict(weight=weight, grid=grid, label=label))
            mixing_roles.add(role)
            overview.append((f'{index}: {role}', weight.numpy()))
            if len(grid) == 2:
                r, c = query_index(args.query[0], grid)
                queries_overview.append((f'{index}: {role}',
                                         weight[r * grid[1] + c].reshape(grid)
                                         .numpy()))
                query_points.append((r, c))
            row['weights'][role] = _entry(key, weight, args.threshold, True, grid)
        for role, name in layer['linear']:
            key, weight = checkpoint_matrix(state, name, args.checkpoint, btype)
            row['weights'][role] = _entry(key, weight, args.threshold, False)
        for role in row['weights']:
            if role not in roles:
                roles.append(role)
        table.append(row)
        fname = osp.join(args.out_dir,
                         f'layer{index:02d}_{block.replace(".", "_") or "root"}.png')
        draw_layer(fname, f'{btype} layer {index} ({block}): token mixing',
                   mixings, args.query)
        figures.append(fname)

    fname = osp.join(args.out_dir, 'overview_matrices.png')
    draw_overview(fname, f'{btype}: token-mixing matrices (rows: output tokens, '
                  'columns: input tokens)', overview)
    figures.append(fname)
    if queries_overview:
        fname = osp.join(args.out_dir, 'overview_queries.png')
        draw_overview(fname, f'{btype}: weights read by the {args.query[0]} output '
                      'patch, per layer', queries_overview, query_points)
        figures.append(fname)

    labels = {r: (f'{names[r]} ({r})' if r in names else r) for r in roles}
    fname = osp.join(args.out_dir, 'sparsity.png')
    draw_sparsity(fname, f'{btype}: share of entries with |w| < {args.threshold:g} '
                  'x max|w| (per matrix)', roles, labels, mixing_roles, table)
    figures.append(fname)
    files = figures + write_numbers(args, btype, roles, mixing_roles, table)

    print(f'{btype} from {args.checkpoint} (config {args.config}): '
          f'{len(table)} layers with token mixing, threshold {args.threshold:g} x '
          'max|w|')
    if resized:
        print('note: drawn at the grids of the checkpoint, which differ from the '
              'config\'s img_size: ' + '; '.join(resized[:4]) +
              (f' (+{len(resized) - 4} more)' if len(resized) > 4 else ''))
    print_table(roles, labels, table)
    print(f'Wrote {len(files)} files to {osp.abspath(args.out_dir)}:')
    for f in files:
        print(f'  {f}')
    return 0


def _entry(key, weight, threshold, mixing, grid=None) -> dict:
    share, top = sparsity(weight, threshold)
    entry = dict(key=key, shape=list(weight.shape),
                 token_mixing=mixing, max_abs=top, sparsity=share)
    if grid is not None:
        entry['grid'] = list(grid)
    return entry


def write_numbers(args, btype, roles, mixing_roles, table) -> List[str]:
    """``sparsity.json`` and ``sparsity.csv``; returns their paths."""
    jpath = osp.join(args.out_dir, 'sparsity.json')
    with open(jpath, 'w') as f:
        json.dump(dict(config=args.config, checkpoint=args.checkpoint,
                       backbone=btype, threshold=args.threshold,
                       definition='share of entries with |w| < threshold * max|w| '
                       'of the matrix',
                       token_mixing_roles=[r for r in roles if r in mixing_roles],
                       layers=table), f, indent=1)
    cpath = osp.join(args.out_dir, 'sparsity.csv')
    with open(cpath, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['layer', 'block', 'role', 'token_mixing', 'key', 'rows',
                         'cols', 'max_abs', 'sparsity'])
        for row in table:
            for role, e in row['weights'].items():
                writer.writerow([row['layer'], row['block'], role,
                                 int(e['token_mixing']), e['key'], *e['shape'],
                                 f'{e["max_abs"]:.6g}', f'{e["sparsity"]:.6f}'])
    return [jpath, cpath]


def print_table(roles, labels, table):
    heads = [labels[r] for r in roles]
    width = max([len('block')] + [len(r['block']) for r in table])
    print(f'{"layer":>5}  {"block":<{width}}  ' +
          '  '.join(f'{h:>{max(8, len(h))}}' for h in heads))
    for row in table:
        cells = []
        for role, head in zip(roles, heads):
            e = row['weights'].get(role)
            text = f'{100 * e["sparsity"]:.1f}%' if e else '-'
            cells.append(f'{text:>{max(8, len(head))}}')
        print(f'{row["layer"]:>5}  {row["block"]:<{width}}  ' + '  '.join(cells))


def main(argv=None):
    args = parse_args(argv)
    try:
        code = analyze(args)
    except ToolError as err:
        sys.exit(f'{PROG}: error: {err}')
    sys.exit(code)


if __name__ == '__main__':
    main()
