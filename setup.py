"""mmsmlp: sparse-MLP vision backbones (sMLPNet, ResMLP, S2-MLP) for OpenMMLab."""
import os
import os.path as osp
import re
import shutil
import sys

from setuptools import find_packages, setup

MIM_FILES = ('configs', 'tools', 'model-index.yml')


def version():
    ns = {}
    with open(osp.join(osp.dirname(__file__), 'mmsmlp', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


def requirements(fname, *names):
    """The requirement lines of ``requirements/<fname>`` (those of ``names`` only,
    when given)."""
    path = osp.join(osp.dirname(__file__), 'requirements', fname)
    with open(path) as f:
        lines = [ln.split('#')[0].strip() for ln in f]
    reqs = [ln for ln in lines if ln]
    if names:
        reqs = [r for r in reqs if re.split(r'[<>=!~ ]', r)[0] in names]
    return reqs


def add_mim_extension():
    """Put configs, tools and model-index.yml into ``mmsmlp/.mim`` as OpenMMLab
    packages do, so that ``mim search/train`` and ``_base_ = 'mmsmlp::...'`` work:
    symbolic links for an editable install, copies for a wheel / normal install."""
    here = osp.dirname(osp.abspath(__file__))
    mim = osp.join(here, 'mmsmlp', '.mim')
    editable = 'develop' in sys.argv or 'editable_wheel' in sys.argv or \
        os.environ.get('PIP_EDITABLE_MODE') == 'compat'
    if not any(a in sys.argv for a in ('develop', 'editable_wheel', 'bdist_wheel',
                                        'install', 'sdist', 'build', 'build_py')):
        return
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(here, name), osp.join(mim, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if editable:
            os.symlink(osp.relpath(src, mim), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copyfile(src, dst)


def mim_package_data():
    """Every file under ``mmsmlp/.mim``, listed one by one: setuptools < 62.3
    reads ``**`` in package_data as one folder level, not as any depth."""
    package = osp.join(osp.dirname(osp.abspath(__file__)), 'mmsmlp')
    files = []
    for folder, subfolders, names in os.walk(osp.join(package, '.mim'),
                                             followlinks=True):
        subfolders[:] = [d for d in subfolders if d != '__pycache__']
        files += [osp.relpath(osp.join(folder, n), package) for n in names
                  if not n.endswith('.pyc')]
    return sorted(files)


add_mim_extension()
setup(
    name='mmsmlp',
    version=version(),
    description='Sparse-MLP vision backbones (sMLPNet, ResMLP, S2-MLP) for '
    'mmdet, mmsegmentation and mmpretrain',
    long_description=open('README.md', encoding='utf-8').read()
    if osp.isfile('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmsmlp', 'mmsmlp.*']),
    include_package_data=True,
    package_data={'mmsmlp': mim_package_data()},
    # the ranges CI tests (requirements/stacks/*.txt); torch and mmcv are checked
    # when mmsmlp is imported and never installed or replaced by pip
    python_requires='>=3.10,<3.12',
    install_requires=requirements('runtime.txt'),
    extras_require={
        'det': requirements('optional.txt', 'mmdet', 'openmim'),
        'seg': requirements('optional.txt', 'mmsegmentation', 'ftfy', 'regex',
                            'openmim'),
        'cls': requirements('optional.txt', 'mmpretrain', 'openmim'),
        'mim': requirements('optional.txt', 'openmim'),
        'deploy': requirements('optional.txt', 'onnx', 'onnxruntime', 'onnxscript'),
        'tests': requirements('tests.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False)
