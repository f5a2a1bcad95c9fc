"""Corrupt checkpoints are refused, with the file (and the bad record or keys)
named, by mmsmlp's reader and every path that goes through it: bytes flipped on
disk (zip CRC-32), truncated files, storages or tensors that do not match the data
the archive holds, TorchScript and tar archives, and weights that are NaN or
infinite (backbones and converters)."""
import importlib.util
import io
import logging
import os.path as osp
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

import mmsmlp  # noqa: F401  (routes mmengine's checkpoint loading)
from mmsmlp.models import SMLPNet
from mmsmlp.utils import CheckpointError, load_state_source, read_checkpoint

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ARCH = dict(embed_dims=8, depths=[1, 1, 1, 1])


def smlpnet_checkpoint(path, prefix='', state=None):
    """An mmengine-style checkpoint of a small SMLPNet (about 300 kB)."""
    torch.manual_seed(0)
    state = SMLPNet(arch=ARCH).state_dict() if state is None else state
    torch.save({'meta': {'iter': 1},
                'state_dict': {prefix + k: v for k, v in state.items()}}, path)
    return str(path)


def record_data_offset(path, name):
    """Where the bytes of zip record ``name`` start in the file."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    with open(path, 'rb') as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack('<HH', header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def largest_tensor_record(path):
    with zipfile.ZipFile(path) as z:
        infos = [i for i in z.infolist() if '/data/' in i.filename]
    return max(infos, key=lambda i: i.file_size).filename


def flip(path, offsets):
    data = bytearray(open(path, 'rb').read())
    for o in offsets:
        data[o] ^= 0xFF
    open(path, 'wb').write(bytes(data))


def rewrite_zip(src, dst, edit=lambda name, data: data):
    """Copy the records of torch zip ``src`` to ``dst`` (Python's zipfile, stored),
    passing each through ``edit(name, data)``."""
    with zipfile.ZipFile(src) as z_in, zipfile.ZipFile(dst, 'w') as z_out:
        for name in z_in.namelist():
            z_out.writestr(name, edit(name, z_in.read(name)))
    return str(dst)


# ------------------------------------------------------------- flipped bytes
def test_a_flipped_byte_in_a_tensor_is_refused_naming_the_record(tmp_path):
    path = smlpnet_checkpoint(tmp_path / 'ckpt.pth')
    record = largest_tensor_record(path)
    start, size = record_data_offset(path, record)
    flip(path, [start + size // 2])
    # the fault: torch's zip reader does not check the CRC-32 and loads it
    torch.load(path, map_location='cpu', weights_only=True)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert path in msg and repr(record) in msg and 'CRC-32' in msg, msg
    # the loading paths of mmengine go through the same check
    from mmengine.runner import load_checkpoint
    with pytest.raises(CheckpointError, match=f'{record}.*CRC-32'):
        load_checkpoint(SMLPNet(arch=ARCH), path, map_location='cpu')
    model = SMLPNet(arch=ARCH, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match=f'{record}.*CRC-32'):
        model.init_weights()


@pytest.mark.parametrize('seed', range(5))
def test_200_random_flipped_bytes_are_refused(tmp_path, seed):
    path = smlpnet_checkpoint(tmp_path / 'ckpt.pth')
    size = osp.getsize(path)
    offsets = np.random.default_rng(seed).choice(size, 200, replace=False)
    flip(path, offsets.tolist())
    with pytest.raises(CheckpointError, match=rf"'{path}'.*(corrupt|truncated)"):
        read_checkpoint(path)


@pytest.mark.parametrize('keep', [0.1, 0.5, 0.99])
def test_a_truncated_checkpoint_is_refused(tmp_path, keep):
    path = smlpnet_checkpoint(tmp_path / 'ckpt.pth')
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=rf"'{path}'.*(truncated|corrupt)"):
        read_checkpoint(path)


def test_a_checkpoint_without_checksums_loads_with_a_warning(tmp_path):
    """torch.serialization.set_crc32_options(False) (torch >= 2.4) writes CRC-32
    fields of 0: such files cannot be verified; they load, and the log says so."""
    src = smlpnet_checkpoint(tmp_path / 'ckpt.pth')
    path = rewrite_zip(src, tmp_path / 'nocrc.pth')
    data = bytearray(open(path, 'rb').read())
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    for info in infos:  # local headers: CRC-32 at +14
        struct.pack_into('<L', data, info.header_offset + 14, 0)
    end = data.rfind(b'PK\x05\x06')  # end of central directory (no zip64 here)
    entries, _, start = struct.unpack('<H L L', data[end + 10:end + 20])
    pos = start
    for _ in range(entries):  # central directory: CRC-32 at +16
        struct.pack_into('<L', data, pos + 16, 0)
        lengths = struct.unpack('<HHH', data[pos + 28:pos + 34])  # name, extra, comment
        pos += 46 + sum(lengths)
    open(path, 'wb').write(bytes(data))
    with zipfile.ZipFile(path) as z:
        assert all(i.CRC == 0 for i in z.infolist())

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    logger, handler = MMLogger.get_current_instance(), Collect()
    logger.addHandler(handler)
    try:
        ckpt = read_checkpoint(path)
    finally:
        logger.removeHandler(handler)
    assert any('without CRC-32' in m and path in m for m in handler.messages)
    reference = read_checkpoint(src)
    for k, v in reference['state_dict'].items():
        torch.testing.assert_close(ckpt['state_dict'][k], v, rtol=0, atol=0)


# ------------------------------------------ storages and tensors vs the data
def _patch_after(data, anchor, old, new, nth=1):
    """Replace the ``nth`` occurrence of ``old`` after ``anchor`` in ``data``."""
    pos = data.index(anchor)
    for _ in range(nth):
        pos = data.index(old, pos + 1)
    return data[:pos] + new + data[pos + len(old):]


def _four_floats(tmp_path, **save_kwargs):
    path = tmp_path / 'four.pth'
    torch.save({'w': torch.arange(4, dtype=torch.float32)}, path, **save_kwargs)
    return path


def test_a_storage_larger_than_its_record_is_refused(tmp_path):
    """torch < 2.10 wraps the 16 bytes of the record as a storage of the declared
    4 MiB (reads past the buffer); the reader compares with the record's size."""
    src = _four_floats(tmp_path)
    big = (1 << 22).to_bytes(4, 'little')
    path = rewrite_zip(src, tmp_path / 'big.pth', lambda name, data: _patch_after(
        data, b'cpu', b'K\x04', b'J' + big) if name.endswith('data.pkl') else data)
    with pytest.raises(CheckpointError, match=r"declares 16777216 bytes for the "
                       r"record 'data/0', which holds 16"):
        read_checkpoint(path)


def test_a_tensor_outside_its_storage_is_refused(tmp_path):
    src = _four_floats(tmp_path)
    big = (400).to_bytes(4, 'little')
    # the second 4 after the storage id is the tensor's size
    path = rewrite_zip(src, tmp_path / 'view.pth', lambda name, data: _patch_after(
        data, b'cpu', b'K\x04', b'J' + big, nth=2) if name.endswith('data.pkl')
        else data)
    with pytest.raises(CheckpointError, match=r'size \(400,\) needs 1600 bytes of '
                       r'its storage, which holds 16'):
        read_checkpoint(path)


def test_legacy_format_loads_and_is_checked(tmp_path):
    """Files of torch < 1.6 (no zip, no checksums) go through the same unpickler;
    a storage larger than the file is refused before it is allocated."""
    path = _four_floats(tmp_path, _use_new_zipfile_serialization=False)
    torch.testing.assert_close(read_checkpoint(path)['w'], torch.arange(4.))
    data = open(path, 'rb').read()
    huge = (1 << 40).to_bytes(8, 'little')
    # the storage id is ('storage', FloatStorage, key, 'cpu', numel, None)
    crafted = _patch_after(data, b'cpu', b'K\x04', b'\x8a\x08' + huge)
    open(path, 'wb').write(crafted)
    with pytest.raises(CheckpointError, match='more than the file holds'):
        read_checkpoint(path)


def test_torchscript_and_tar_archives_are_refused(tmp_path):
    ts = str(tmp_path / 'scripted.pt')
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), ts)
    with pytest.raises(CheckpointError, match=f"'{ts}' is a TorchScript archive"):
        read_checkpoint(ts)
    tar = str(tmp_path / 'old.pth')
    with tarfile.open(tar, 'w') as archive:
        info = tarfile.TarInfo('pickle')
        payload = pickle.dumps({'w': 1}, protocol=2)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    with pytest.raises(CheckpointError, match=f"'{tar}' is a tar archive"):
        read_checkpoint(tar)


def test_a_zip_that_torch_save_did_not_write_is_refused(tmp_path):
    path = str(tmp_path / 'other.zip')
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('other/readme.txt', b'not a checkpoint')
    with pytest.raises(CheckpointError, match=r"without a data.pkl record.*"
                       r"'readme.txt'"):
        read_checkpoint(path)


def test_a_zip_with_two_records_of_one_name_is_refused(tmp_path):
    src = _four_floats(tmp_path)
    path = str(tmp_path / 'twice.pth')
    with zipfile.ZipFile(src) as z_in, zipfile.ZipFile(path, 'w') as z_out:
        for name in z_in.namelist():
            z_out.writestr(name, z_in.read(name))
        data0 = next(n for n in z_in.namelist() if n.endswith('data/0'))
        with pytest.warns(UserWarning, match='Duplicate name'):
            z_out.writestr(data0, b'\x00' * 64)
    with pytest.raises(CheckpointError, match='several records of the same name'):
        read_checkpoint(path)


# ----------------------------------------------------------------- NaN / Inf
def _poisoned_state():
    torch.manual_seed(0)
    state = SMLPNet(arch=ARCH).state_dict()
    keys = [k for k, v in state.items() if v.is_floating_point() and v.dim() > 1]
    state[keys[0]] = state[keys[0]].clone()
    state[keys[0]].view(-1)[3] = float('nan')
    state[keys[-1]] = state[keys[-1]].clone()
    state[keys[-1]].view(-1)[0] = float('-inf')
    return state, (keys[0], keys[-1])


@pytest.mark.parametrize('prefix', ['', 'backbone.'])
def test_nan_weights_are_refused_by_the_backbone(tmp_path, prefix):
    from mmengine.runner import load_checkpoint
    state, (nan_key, inf_key) = _poisoned_state()
    path = smlpnet_checkpoint(tmp_path / 'nan.pth', prefix, state)
    cfg = dict(type='Pretrained', checkpoint=path)
    if prefix:
        cfg['prefix'] = prefix
    model = SMLPNet(arch=ARCH, init_cfg=cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        model.init_weights()
    msg = str(err.value)
    assert 'NaN or infinite' in msg and 'SMLPNet' in msg
    assert repr(nan_key) in msg and repr(inf_key) in msg, msg
    for k, v in model.state_dict().items():  # nothing was loaded
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, equal_nan=True)
    if not prefix:
        with pytest.raises(CheckpointError, match=f'{nan_key!r}'):
            load_checkpoint(SMLPNet(arch=ARCH), path, strict=True)


def test_nan_weights_are_refused_by_the_converters(tmp_path, capsys):
    from mmsmlp.testing import OfficialSMLPNet
    torch.manual_seed(0)
    state = OfficialSMLPNet(16, [1, 2, 2, 1], 3, 7).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float('nan'))
    src = tmp_path / 'official.pth'
    torch.save({'model': state}, src)
    with pytest.raises(CheckpointError, match=rf"{key!r} \(\d+ of \d+\)"):
        load_state_source(src)
    spec = importlib.util.spec_from_file_location(
        'smlp2mmsmlp', osp.join(ROOT, 'tools', 'model_converters', 'smlp2mmsmlp.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rc = tool.main([str(src), str(tmp_path / 'out.pth')])
    err = capsys.readouterr().err
    assert rc == 1 and repr(key) in err and 'NaN or infinite' in err, err
    assert not (tmp_path / 'out.pth').exists()
