"""mmsmlp installed the ways users install it, used from a folder outside the
repository: a wheel built from the repository and installed into a fresh
environment, and the editable install of the environment running the tests.

In each: ``mim search mmsmlp`` lists the models, a config inherits
``_base_ = 'mmsmlp::...'``, and ``mim train mmsmlp <toy config>`` trains a few
iterations. Every command runs in a subprocess with a temporary folder as its
working directory, so nothing is found through the repository by accident.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ENV = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX='1',
           PIP_DISABLE_PIP_VERSION_CHECK='1', OMP_NUM_THREADS='1')
ENV.pop('PYTHONPATH', None)


def run(cmd, cwd, timeout=600):
    out = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, (f'{cmd} failed:\n{out.stdout[-3000:]}\n'
                                 f'{out.stderr[-3000:]}')
    return out.stdout + out.stderr


def source_files():
    """The repository's files as a clean clone has them (tracked or not ignored)."""
    listed = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'],
                            cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in listed.decode().split('\0') if p and osp.isfile(osp.join(ROOT, p))]


def build_wheel(tmp):
    """A wheel of a copy of the repository (building in place would turn the
    editable install's links in mmsmlp/.mim into copies)."""
    src = tmp / 'src'
    for rel in source_files():
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(osp.join(ROOT, rel), dst)
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
         '-w', str(tmp / 'dist'), str(src)], cwd=tmp)
    (wheel, ) = (tmp / 'dist').glob('mmsmlp-*.whl')
    return wheel


def fresh_environment(tmp):
    """A new virtual environment holding the packages of this one (linked, to
    spare gigabytes of copies) but not mmsmlp: the user's own OpenMMLab stack."""
    env = tmp / 'env'
    run([sys.executable, '-m', 'venv', '--without-pip', str(env)], cwd=tmp)
    python = env / 'bin' / 'python'
    target = run([str(python), '-c', 'import sysconfig; '
                  'print(sysconfig.get_paths()["purelib"])'], cwd=tmp).strip()
    here = sysconfig.get_paths()['purelib']
    for name in os.listdir(here):
        if name.startswith(('mmsmlp', '__editable__')) or name == 'easy-install.pth':
            continue
        os.symlink(osp.join(here, name), osp.join(target, name))
    return python


@pytest.fixture(scope='module')
def installed(request, tmp_path_factory):
    """``(python, kind)`` of an environment where mmsmlp is installed as
    ``kind`` says, and a working folder outside the repository."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == 'editable':
        python = sys.executable
    else:
        wheel = build_wheel(tmp)
        python = fresh_environment(tmp)
        out = run([str(python), '-m', 'pip', 'install', str(wheel)], cwd=tmp)
        # the user's torch and mmcv are never touched: the wheel does not ask
        # for them (they are checked when mmsmlp is imported)
        assert 'Successfully installed mmsmlp-' in out
        with zipfile.ZipFile(wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
            requires = [ln.split(':', 1)[1].split(';')[0].strip().lower()
                        for ln in z.read(meta).decode().splitlines()
                        if ln.startswith('Requires-Dist:')]
        assert not [r for r in requires if r.startswith(('torch', 'mmcv'))], requires
    work = tmp / 'work'
    work.mkdir()
    location = run([str(python), '-c', 'import mmsmlp; print(mmsmlp.__file__)'],
                   cwd=work).strip().splitlines()[-1]
    expected_root = ROOT if request.param == 'editable' else str(tmp / 'env')
    assert location.startswith(expected_root), location
    return python, work


pytestmark = pytest.mark.parametrize('installed', ['wheel', 'editable'],
                                     indirect=True)


def test_mim_search_lists_the_models(installed):
    python, work = installed
    out = run([str(python), '-m', 'mim', 'search', 'mmsmlp'], cwd=work)
    for name in ('smlpnet-t_8xb128_in1k', 'mask-rcnn_smlpnet-t_fpn_1x_coco',
                 'upernet_smlpnet-t_4xb4-160k_ade20k-512x512', 'resmlp-s12_8xb128_in1k'):
        assert name in out


def test_configs_inherit_through_the_mmsmlp_scope(installed):
    python, work = installed
    (work / 'mine.py').write_text(
        "_base_ = 'mmsmlp::smlpnet/smlpnet-t_8xb128_in1k.py'\n"
        "model = dict(backbone=dict(drop_path_rate=0.1))\n")
    script = textwrap.dedent('''
        import mmsmlp  # lets mmengine resolve the mmsmlp:: scope
        from mmengine.config import Config
        cfg = Config.fromfile('mine.py')
        print(cfg.model.backbone.type, cfg.model.backbone.drop_path_rate,
              cfg.model.backbone.arch)
        ''')
    assert 'SMLPNet 0.1 tiny' in run([str(python), '-c', script], cwd=work)


def test_mim_train_runs_a_toy_config(installed):
    python, work = installed
    run([str(python), '-c', 'from mmsmlp.datasets.toy_data import make_toy_imagenet; '
         "make_toy_imagenet('data/toy_imagenet', num_train_per_class=4, "
         'num_val_per_class=2, max_size=128)'], cwd=work)
    out = run([str(python), '-m', 'mim', 'train', 'mmsmlp', 'smlpnet-mini_toy-imagenet.py',
               '--work-dir', 'run', '--cfg-options', 'train_cfg.max_epochs=1',
               'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1',
               'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
               'train_dataloader.persistent_workers=False',
               'val_dataloader.persistent_workers=False'], cwd=work, timeout=900)
    assert 'Training finished successfully' in out
    assert (work / 'run' / 'epoch_1.pth').is_file()
    # the config and the training script are the installed ones
    train_script = next(ln for ln in out.splitlines() if 'Training command is' in ln)
    if python != sys.executable:
        assert str(work.parent / 'env') in train_script and ROOT not in train_script
