"""Check model-index.yml and the metafiles it imports.

    python tools/misc/check_model_index.py [--index model-index.yml] [--flops]

Every Import and Config path exists, every model Name is unique, every Model
belongs to a Collection, and Metadata Parameters (and FLOPs with --flops) equal
what mmsmlp.utils.complexity measures for that config now. Exit code 1 with one
line per problem.
"""
import argparse
import os.path as osp
import sys

import yaml


def check(index: str, flops: bool = False, measure=None):
    """The list of problems of ``index`` (empty when everything agrees)."""
    if measure is None:
        from mmsmlp.utils.complexity import measure
    root = osp.dirname(osp.abspath(index))
    problems, names = [], {}
    if not osp.isfile(index):
        return [f'{index}: file does not exist']
    with open(index) as f:
        imports = (yaml.safe_load(f) or {}).get('Import') or []
    if not imports:
        problems.append(f'{index}: imports no metafile')
    defined = {}  # collection name -> (metafile, definition)
    for imp in imports:
        path = osp.join(root, imp)
        if not osp.isfile(path):
            problems.append(f'{index}: imported metafile {imp} does not exist')
            continue
        with open(path) as f:
            meta = yaml.safe_load(f) or {}
        collections = {c.get('Name') for c in meta.get('Collections') or []}
        for c in meta.get('Collections') or []:
            for key in ('Name', 'Paper', 'Code', 'README'):
                if key not in c:
                    problems.append(f'{imp}: collection {c.get("Name")} has no {key}')
            readme = c.get('README')
            if readme and not osp.isfile(osp.join(root, readme)):
                problems.append(f'{imp}: README {readme} does not exist')
            # mim keeps the last definition of a collection name
            first = defined.setdefault(c.get('Name'), (imp, c))
            if first[1] != c:
                problems.append(f'{imp}: collection {c.get("Name")} differs from its '
                                f'definition in {first[0]}')
        for m in meta.get('Models') or []:
            name = m.get('Name')
            if name in names:
                problems.append(f'{imp}: model name {name} also in {names[name]}')
            names[name] = imp
            if m.get('In Collection') not in collections:
                problems.append(f'{imp}: model {name} is in collection '
                                f'{m.get("In Collection")!r}, which {imp} does not define')
            config = m.get('Config')
            if not config or not osp.isfile(osp.join(root, config)):
                problems.append(f'{imp}: model {name}: config {config} does not exist')
                continue
            md = m.get('Metadata') or {}
            size = md.get('Input Size')
            shape = tuple(int(v) for v in size.split('x')) if size else None
            params, measured_flops, _ = measure(osp.join(root, config), shape,
                                                flops=flops and 'FLOPs' in md)
            if md.get('Parameters') != params:
                problems.append(f'{imp}: model {name}: Parameters {md.get("Parameters")} '
                                f'but the config measures {params}')
            if measured_flops is not None and md.get('FLOPs') != measured_flops:
                problems.append(f'{imp}: model {name}: FLOPs {md.get("FLOPs")} but the '
                                f'config measures {measured_flops}')
            if 'Weights' in m and not osp.isfile(osp.join(root, str(m['Weights']))):
                problems.append(f'{imp}: model {name}: Weights {m["Weights"]} is not a '
                                'file of this repository')
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--index', default='model-index.yml')
    p.add_argument('--flops', action='store_true', help='also re-measure the FLOPs')
    args = p.parse_args(argv)
    problems = check(args.index, args.flops)
    for line in problems:
        print(line)
    if problems:
        sys.exit(1)
    print(f'{args.index}: OK')


if __name__ == '__main__':
    main()
