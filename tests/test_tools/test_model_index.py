"""model-index.yml and its metafiles: the checker, modelindex and `mim search`."""
import os.path as osp
import sys

import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'misc'))
from check_model_index import check  # noqa: E402


def all_models():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    models = []
    for imp in imports:
        with open(osp.join(ROOT, imp)) as f:
            models += yaml.safe_load(f)['Models']
    return models


def test_every_config_has_an_entry():
    import glob
    configs = {osp.relpath(p, ROOT) for folder in ('smlpnet', 'resmlp', 's2mlp', 'toy')
               for p in glob.glob(osp.join(ROOT, 'configs', folder, '*.py'))}
    assert configs == {m['Config'] for m in all_models()}


def test_checker_passes_on_the_repository():
    """Paths, unique names, collections, and Parameters equal to a fresh
    measurement of every config."""
    assert check(osp.join(ROOT, 'model-index.yml')) == []


def test_results_only_where_this_project_produced_them():
    for m in all_models():
        if 'Results' in m:
            assert '(generated)' in m['Metadata']['Training Data'], m['Name']
        assert 'Weights' not in m  # no weights are shipped


def test_checker_finds_problems(tmp_path):
    (tmp_path / 'configs').mkdir()
    (tmp_path / 'configs' / 'a.py').write_text('x = 1\n')
    (tmp_path / 'README.md').write_text('')
    meta = {
        'Collections': [{'Name': 'sMLPNet', 'Paper': {}, 'Code': {}, 'README': 'README.md'}],
        'Models': [
            {'Name': 'm1', 'In Collection': 'sMLPNet', 'Config': 'configs/a.py',
             'Metadata': {'Parameters': 10}},
            {'Name': 'm1', 'In Collection': 'Nope', 'Config': 'configs/missing.py'},
            {'Name': 'm2', 'In Collection': 'sMLPNet', 'Config': 'configs/a.py',
             'Metadata': {'Parameters': 11}, 'Weights': 'w.pth'},
        ]
    }
    (tmp_path / 'meta.yml').write_text(yaml.safe_dump(meta))
    other = {'Collections': [dict(meta['Collections'][0], README='configs/a.py')],
             'Models': []}
    (tmp_path / 'other.yml').write_text(yaml.safe_dump(other))
    (tmp_path / 'model-index.yml').write_text(yaml.safe_dump(
        {'Import': ['meta.yml', 'other.yml', 'gone.yml']}))
    problems = check(str(tmp_path / 'model-index.yml'),
                     measure=lambda cfg, shape, flops: (10, None, (1, 1)))
    text = '\n'.join(problems)
    assert 'gone.yml does not exist' in text
    assert 'model name m1 also in' in text
    assert "collection 'Nope'" in text
    assert 'configs/missing.py does not exist' in text
    assert 'Parameters 11 but the config measures 10' in text
    assert 'Weights w.pth' in text
    assert 'other.yml: collection sMLPNet differs from its definition in meta.yml' in text
    assert len(problems) == 7


def test_modelindex_loads_the_index():
    from modelindex.load_model_index import load
    index = load(osp.join(ROOT, 'model-index.yml'))
    names = {m.name for m in index.models}
    assert 'smlpnet-t_8xb128_in1k' in names
    assert len(names) == len(all_models())
