"""``import mmsmlp`` (what ``custom_imports`` does) needs only torch, mmengine,
mmcv and timm: what only the toy-data generators, converters and tools use is
imported where it is used."""
import os.path as osp
import subprocess
import sys
import textwrap

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# cv2 is not in the list: mmcv itself imports it (mmcv.image), so no package that
# needs mmcv can do without it.
BLOCKED = ('pycocotools', 'matplotlib', 'mmdet', 'mmseg', 'mmpretrain', 'scipy',
           'onnx', 'onnxruntime', 'mim')


def test_import_and_forward_without_the_optional_packages(tmp_path):
    # importing a blocked package fails; looking it up does not (torch._dynamo,
    # which timm imports, looks up onnx and others to skip their folders)
    script = textwrap.dedent(f'''
        import importlib.abc, importlib.machinery, sys

        class Refuse(importlib.abc.Loader):
            def create_module(self, spec):
                raise ImportError(f'{{spec.name}} is blocked by the test')

            def exec_module(self, module):
                pass

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {BLOCKED!r}:
                    return importlib.machinery.ModuleSpec(name, Refuse())

        sys.meta_path.insert(0, Block())
        try:
            import onnx
        except ImportError as e:
            assert 'blocked by the test' in str(e), e
        else:
            raise AssertionError('onnx was not blocked')
        import torch
        import mmsmlp
        from mmsmlp.models import SMLPNet, ResMLP, S2MLP
        loaded = sorted(m for m in {BLOCKED!r} if m in sys.modules)
        assert not loaded, loaded
        model = SMLPNet(arch=dict(embed_dims=8, depths=[1, 1, 1, 1])).eval()
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 64, 96))
        print([tuple(o.shape) for o in outs])
        ''')
    out = subprocess.run([sys.executable, '-c', script], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '(1, 64, 2, 3)' in out.stdout
