"""Write ``configs/<folder>/metafile.yml`` and ``model-index.yml`` (OpenMMLab
metafile format) from the configs, with Parameters and FLOPs measured by
``mmsmlp.utils.complexity`` (the project's own tool).

    python tools/misc/make_metafiles.py [--folders smlpnet resmlp s2mlp toy]

Results are written only for results this project produced: the measured toy
results listed in ``configs/toy/results.yml`` (no paper figure is presented as a
result here); Weights only where a file exists (none is shipped).
"""
import argparse
import glob
import os.path as osp
import sys

import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VERSION = 'v0.1.0'

PAPERS = {
    'sMLPNet': ('Sparse MLP for Image Recognition: Is Self-Attention Really Necessary?',
                'https://arxiv.org/abs/2109.05422', 'smlpnet.py',
                ['sMLP', 'Depthwise Convolution', 'Axial Token Mixing']),
    'ResMLP': ('ResMLP: Feedforward networks for image classification with '
               'data-efficient training', 'https://arxiv.org/abs/2105.03404',
               'resmlp.py', ['Affine', 'Token-mixing MLP', 'LayerScale']),
    'S2-MLP': ('S2-MLP: Spatial-Shift MLP Architecture for Vision',
               'https://arxiv.org/abs/2106.07477', 's2mlp.py',
               ['Spatial Shift', 'Channel MLP']),
}
FOLDERS = {'smlpnet': ['sMLPNet'], 'resmlp': ['ResMLP'], 's2mlp': ['S2-MLP'],
           'toy': ['sMLPNet', 'ResMLP', 'S2-MLP']}
# ImageNet-1k top-1 reported by the papers: shown in the READMEs, labelled as the
# paper's, and never written as a Result of this project
PAPER_TOP1 = {
    'smlpnet-t-a2_8xb128_in1k': 81.3, 'smlpnet-t_8xb128_in1k': 81.9,
    'smlpnet-s_8xb128_in1k': 83.1, 'smlpnet-b_8xb128_in1k': 83.4,
    'resmlp-s12_8xb128_in1k': 76.6, 'resmlp-s24_8xb128_in1k': 79.4,
    'resmlp-s36_8xb128_in1k': 79.7, 's2mlp-wide_8xb128_in1k': 80.0,
    's2mlp-deep_8xb128_in1k': 80.7,
}
TASKS = {'mmpretrain': 'Image Classification', 'mmseg': 'Semantic Segmentation'}


def collection(name: str) -> dict:
    """The collection of an architecture, the same in every metafile that lists it
    (mim keeps the last definition of a name)."""
    title, url, code, arch = PAPERS[name]
    home, = [f for f, names in FOLDERS.items() if names == [name]]
    return {
        'Name': name,
        'Metadata': {'Architecture': arch},
        'Paper': {'Title': title, 'URL': url},
        'README': f'configs/{home}/README.md',
        'Code': {'URL': f'mmsmlp/models/backbones/{code}', 'Version': VERSION},
    }


def dataset_of(name: str) -> str:
    for key, value in (('toy-coco', 'Toy COCO (generated)'),
                       ('toy-ade20k', 'Toy ADE20K (generated)'),
                       ('toy-imagenet', 'Toy ImageNet (generated)'),
                       ('coco', 'COCO'), ('ade20k', 'ADE20K'), ('in1k', 'ImageNet-1k')):
        if key in name:
            return value
    raise ValueError(f'cannot tell the dataset of config {name!r}')


def collection_of(name: str, choices) -> str:
    if len(choices) == 1:
        return choices[0]
    for key, coll in (('resmlp', 'ResMLP'), ('s2mlp', 'S2-MLP'), ('smlpnet', 'sMLPNet')):
        if key in name:
            return coll
    raise ValueError(f'cannot tell the architecture of config {name!r}')


def model_entry(path: str, folder: str, results: dict) -> dict:
    from mmsmlp.utils.complexity import measure
    name = osp.splitext(osp.basename(path))[0]
    params, flops, shape = measure(path)
    from mmengine.config import Config
    scope = Config.fromfile(path).default_scope
    entry = {
        'Name': name,
        'In Collection': collection_of(name, FOLDERS[folder]),
        'Config': osp.relpath(path, ROOT),
        'Metadata': {
            'Parameters': params,
            'FLOPs': flops,
            'Input Size': f'{shape[0]}x{shape[1]}',
            'Training Data': dataset_of(name),
        },
    }
    if name in results:
        task = TASKS.get(scope, 'Instance Segmentation')
        entry['Results'] = [{'Task': r['Task'] if 'Task' in r else task,
                             'Dataset': dataset_of(name), 'Metrics': r['Metrics']}
                            for r in results[name]]
    return entry


def write_readme_table(readme: str, models, results):
    """Fill the table between ``<!-- models -->`` and ``<!-- /models -->``."""
    if not osp.isfile(readme):
        return
    rows = ['| config | params (M) | FLOPs (G) | input | results (this project) | '
            'paper\'s ImageNet top-1 (not a result of this project) |',
            '| --- | --- | --- | --- | --- | --- |']
    for m in models:
        md = m['Metadata']
        res = '; '.join(f'{k} {v}' for r in m.get('Results', [])
                        for k, v in r['Metrics'].items()) or '-'
        rows.append(f"| [{m['Name']}]({osp.basename(m['Config'])}) | "
                    f"{md['Parameters'] / 1e6:.2f} | {md['FLOPs'] / 1e9:.2f} | "
                    f"{md['Input Size']} | {res} | {PAPER_TOP1.get(m['Name'], '-')} |")
    with open(readme) as f:
        text = f.read()
    start, end = '<!-- models -->', '<!-- /models -->'
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + start + '\n' + '\n'.join(rows) + '\n' + end + tail
        with open(readme, 'w') as f:
            f.write(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--folders', nargs='+', default=list(FOLDERS))
    args = p.parse_args(argv)
    imports = []
    for folder in args.folders:
        configs = sorted(glob.glob(osp.join(ROOT, 'configs', folder, '*.py')))
        if not configs:
            continue
        results_file = osp.join(ROOT, 'configs', folder, 'results.yml')
        results = {}
        if osp.isfile(results_file):
            with open(results_file) as f:
                results = yaml.safe_load(f) or {}
        used = []
        models = []
        for path in configs:
            print(f'measuring {osp.relpath(path, ROOT)}', file=sys.stderr, flush=True)
            entry = model_entry(path, folder, results)
            models.append(entry)
            if entry['In Collection'] not in used:
                used.append(entry['In Collection'])
        meta = {'Collections': [collection(c) for c in used], 'Models': models}
        out = osp.join(ROOT, 'configs', folder, 'metafile.yml')
        with open(out, 'w') as f:
            yaml.safe_dump(meta, f, sort_keys=False, width=100)
        imports.append(f'configs/{folder}/metafile.yml')
        write_readme_table(osp.join(ROOT, 'configs', folder, 'README.md'), models,
                           results)
        print(f'wrote {osp.relpath(out, ROOT)} ({len(models)} models)')
    index = osp.join(ROOT, 'model-index.yml')
    old = []
    if osp.isfile(index):
        with open(index) as f:
            old = (yaml.safe_load(f) or {}).get('Import', [])
    merged = sorted(set(old) | set(imports))
    with open(index, 'w') as f:
        yaml.safe_dump({'Import': merged}, f)
    print(f'wrote model-index.yml ({len(merged)} metafiles)')


if __name__ == '__main__':
    main()
