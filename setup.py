"""mmsmlp: sparse-MLP vision backbones (sMLPNet, ResMLP, S2-MLP) for OpenMMLab."""
import os.path as osp

from setuptools import find_packages, setup


def version():
    ns = {}
    with open(osp.join(osp.dirname(__file__), 'mmsmlp', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


setup(
    name='mmsmlp',
    version=version(),
    description='Sparse-MLP vision backbones (sMLPNet, ResMLP, S2-MLP) for '
    'mmdet, mmsegmentation and mmpretrain',
    long_description=open('README.md', encoding='utf-8').read()
    if osp.isfile('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmsmlp', 'mmsmlp.*']),
    python_requires='>=3.8',
    # ranges for users with their own stack; tools/install.sh pins the tested one
    install_requires=['mmengine>=0.10.0,<1.0', 'mmcv>=2.0.0,<2.2.0', 'timm>=0.9'],
    extras_require={
        'det': ['mmdet>=3.0.0,<3.4.0'],
        'seg': ['mmsegmentation>=1.0.0,<1.3.0', 'ftfy', 'regex'],
        'cls': ['mmpretrain>=1.0.0,<1.3.0'],
        'tests': ['pytest'],
    },
    license='Apache License 2.0',
    zip_safe=False)
