"""timm's own generic model tests (``tests/test_models.py`` of the timm sdist, the
installed version) pass for the ``smlpnet_*`` timm models: forward, backward,
default configs (on the meta device), features_only, torch.fx forward and backward.

The two TorchScript tests are expected failures: TorchScript is not supported
(``timm_suite_runner.TORCHSCRIPT_REASON``). ``torch.jit.script`` compiles a
statically typed subset of Python, and the size-generic code is outside it: the
token mixing (``mmsmlp.models.utils.token_mixing.mix_grid``) serves grids of one
axis (sMLPNet) and of two (ResMLP) with one code path, typed ``Tuple[int, ...]``
and expanded with ``**`` / ``*`` at run time, while TorchScript has no
variable-length tuple type (``Expression of type dots cannot be used in a type
expression``) and no ``**kwargs`` expansion (``keyword-arg expansion is not
supported``). Other functions fail as well (module-level state of the size
helpers, f-string conversions in the input check); which error is met first
depends on the order of compilation. torch 2.13 deprecates ``torch.jit.script`` in favour of
``torch.compile`` and ``torch.export``.

The timm sdist is fetched by ``tools/install.sh`` into ``<venv>/timm-tests``; the
environment variable ``MMSMLP_TIMM_TESTS`` names another folder holding the
extracted ``timm-<version>/``.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import timm

RUNNER = osp.join(osp.dirname(osp.abspath(__file__)), 'timm_suite_runner.py')
NAMES = ('smlpnet_base', 'smlpnet_small', 'smlpnet_tiny', 'smlpnet_tiny_a2')
# timm's tests that select the smlpnet models (outside GitHub Actions) and the
# outcome each must have
EXPECTED = {
    'test_model_forward[1-{}]': 'passed',
    'test_model_backward[2-{}]': 'passed',
    'test_model_default_cfgs[1-{}]': 'passed',
    'test_model_forward_features[1-{}]': 'passed',
    'test_model_forward_fx[1-{}]': 'passed',
    'test_model_backward_fx[2-{}]': 'passed',
    # TorchScript is not supported (module docstring)
    'test_model_forward_torchscript[1-{}]': 'xfailed',
    'test_model_forward_fx_torchscript[1-{}]': 'xfailed',
}
# settings read by timm's tests (or pytest) that change which tests exist or
# how they run
TIMM_TEST_ENV = ('GITHUB_ACTIONS', 'TORCH_BACKEND', 'TORCH_DEVICE', 'TIMEOUT',
                 'PYTEST_ADDOPTS')


def _timm_test_models_py() -> str:
    folder = os.environ.get('MMSMLP_TIMM_TESTS') or osp.join(sys.prefix,
                                                             'timm-tests')
    version = timm.__version__
    path = osp.join(folder, f'timm-{version}', 'tests', 'test_models.py')
    if not osp.isfile(path):
        pytest.fail(
            f'timm\'s test suite is missing: no {path}. It comes with the timm '
            f'{version} sdist (the wheel has no tests); tools/install.sh fetches '
            'it, or run:\n'
            f'  PIP_CONFIG_FILE=/dev/null {sys.executable} -m pip download '
            f'--no-deps --no-binary :all: timm=={version} -d {folder}\n'
            f'  tar -xzf {folder}/timm-{version}.tar.gz -C {folder}',
            pytrace=False)
    return path


def check_results(results: dict, log: str = ''):
    """Assert the outcome of every timm test (``results`` as the runner writes
    them); ``log`` is shown with a failure."""
    results = dict(results)
    # the installed timm ran them, not the sources in the sdist
    timm_file = results.pop('_timm', None)
    assert timm_file and osp.dirname(timm_file) == osp.dirname(timm.__file__), \
        f'timm\'s tests ran with timm from {timm_file}\n{log}'
    expected = {t.format(n): o for t, o in EXPECTED.items() for n in NAMES}
    got = {name: r.get('outcome') for name, r in results.items()}
    assert got == expected, (
        'outcomes of timm\'s tests differ from the expected ones:\n' + '\n'.join(
            f'  {name}: {got.get(name)} (expected {expected.get(name)}) '
            f'{results.get(name, {}).get("error", "")}'
            for name in sorted(set(got) | set(expected))
            if got.get(name) != expected.get(name)) + f'\n{log}')
    # each expected failure is TorchScript refusing to compile the model, raised
    # inside torch.jit, not an error of the model's forward
    jit_dir = osp.join('torch', 'jit', '')
    for name, outcome in expected.items():
        if outcome == 'xfailed':
            assert jit_dir in results[name].get('raised_in', ''), \
                f'{name}: not a TorchScript compile error: {results[name]}'


def test_timm_generic_model_tests_pass_for_smlpnet(tmp_path):
    test_file = _timm_test_models_py()
    result_json = tmp_path / 'results.json'
    env = {k: v for k, v in os.environ.items() if k not in TIMM_TEST_ENV}
    # from an empty folder, so that the sdist's timm/ sources are not importable
    proc = subprocess.run(
        [sys.executable, RUNNER, test_file, str(result_json)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600)
    log = (proc.stdout + proc.stderr)[-6000:]
    assert result_json.is_file(), f'timm\'s tests did not run:\n{log}'
    check_results(json.loads(result_json.read_text()), log)
    assert proc.returncode == 0, log
