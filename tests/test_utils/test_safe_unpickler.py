"""mmsmlp.utils.safe_unpickler: the allow-list rebuilds checkpoint data and
nothing else; what a pickle could use to run code or to change the process
(getattr, mmengine's HistoryBuffer registry, numpy's object arrays, storages it
did not read) is refused, naming what it needed."""
import argparse
import io
import pickle
import struct
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmsmlp.utils import CheckpointError, read_checkpoint
from mmsmlp.utils import safe_unpickler
from mmsmlp.utils.safe_unpickler import (ForbiddenGlobalError,
                                         MalformedCheckpointError)


class Call:
    """Pickles as ``fn(*args)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __call__(self, *args):
        raise AssertionError('not meant to be called')

    def __reduce__(self):
        return self.fn, self.args


def unpickle(obj_or_bytes, protocol=2):
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else \
        pickle.dumps(obj_or_bytes, protocol=protocol)
    return safe_unpickler.finalize(safe_unpickler.load(io.BytesIO(data)))


def _global(module, name):
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _unicode(text):
    return b'X' + struct.pack('<I', len(text)) + text.encode()


# -------------------------------------------------------------------- getattr
@pytest.mark.parametrize('target, name', [
    (HistoryBuffer, '__init__'),  # a way to its module's globals
    (HistoryBuffer, 'update'),  # a method, but not a statistics method
    (OrderedDict, '__class__'),
    (HistoryBuffer, '__class__'),
])
def test_getattr_is_refused_except_for_history_buffer_statistics(target, name):
    with pytest.raises(ForbiddenGlobalError, match=rf"getattr.*{name}.*refused") \
            as err:
        unpickle(Call(getattr, target, name))
    assert 'getattr' in err.value.global_name


def test_getattr_on_a_statistics_method_is_refused():
    with pytest.raises(ForbiddenGlobalError, match='getattr'):
        unpickle(Call(getattr, Call(getattr, HistoryBuffer, 'mean'), '__globals__'))


def test_a_statistics_method_is_not_data_on_its_own():
    with pytest.raises(MalformedCheckpointError, match='only data'):
        unpickle({'m': Call(getattr, HistoryBuffer, 'mean')})


# -------------------------------------------------------------- HistoryBuffer
@pytest.mark.parametrize('protocol', [2, 4])
def test_history_buffers_are_rebuilt(protocol):
    buf = HistoryBuffer([1.0, 2.0, 4.0], [1, 1, 2], max_length=10)
    back = unpickle({'hub': {'loss': buf}}, protocol)['hub']['loss']
    assert type(back) is HistoryBuffer and back.max_length == 10
    np.testing.assert_array_equal(back.data[0], [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(back.data[1], [1, 1, 2])
    assert back.data[0].dtype == np.float64 and back.data[1].dtype == np.int64
    assert back.mean() == buf.mean() == 7 / 4 and back.current() == 4.0


def test_a_pickle_cannot_change_the_statistics_of_every_history_buffer():
    registered = dict(HistoryBuffer._statistics_methods)
    # a state whose statistics_methods names something else than mmengine's
    # methods: HistoryBuffer.__setstate__ would register it for the whole process
    state = (b'\x80\x02' + _global('mmengine.logging.history_buffer', 'HistoryBuffer')
             + b')\x81}(' + _unicode('statistics_methods') + b'}('
             + _unicode('mean') + _global('collections', 'OrderedDict') + b'u'
             + _unicode('max_length') + b'K\x05'
             + _unicode('_log_history') + b']' + _unicode('_count_history') + b']'
             + b'ub.')
    with pytest.raises(MalformedCheckpointError, match='statistics_methods'):
        unpickle(state)
    # BUILD on the class itself (to set its attributes) fails
    build_class = (b'\x80\x02' + _global('mmengine.logging.history_buffer',
                                         'HistoryBuffer')
                   + b'}' + _unicode('mean') + b'K\x01sb.')
    with pytest.raises(TypeError):
        unpickle(build_class)
    assert HistoryBuffer._statistics_methods == registered
    assert HistoryBuffer([1, 3], [1, 1]).mean() == 2


@pytest.mark.parametrize('state, match', [
    ({'max_length': 5}, 'missing'),
    ({'max_length': 5, '_log_history': [], '_count_history': [], 'x': 1}, 'unknown'),
    ({'max_length': -1, '_log_history': [], '_count_history': []}, 'max_length'),
    ({'max_length': 5, '_log_history': [1.0], '_count_history': [1]}, '1-D numeric'),
])
def test_a_history_buffer_state_is_checked(state, match):
    # NEWOBJ HistoryBuffer, then BUILD with `state`
    data = pickle.dumps(state, protocol=2)
    blob = (b'\x80\x02' + _global('mmengine.logging.history_buffer', 'HistoryBuffer')
            + b')\x81' + data[2:-1] + b'b.')
    with pytest.raises(MalformedCheckpointError, match=match):
        unpickle(blob)


# ---------------------------------------------------------------------- numpy
@pytest.mark.parametrize('value', [
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.array([True, False]), np.zeros((0, 3), np.uint8), np.array(3 + 4j),
    np.arange(4, dtype='>i4'),
])
def test_numeric_numpy_arrays_are_rebuilt(value):
    back = unpickle({'a': value})['a']
    assert back.dtype == value.dtype and back.flags.writeable
    np.testing.assert_array_equal(back, value)


@pytest.mark.parametrize('value', [np.float64(0.25), np.int64(-3), np.bool_(True),
                                   np.float16(1.5)])
def test_numpy_scalars_are_rebuilt(value):
    back = unpickle([value])[0]
    assert type(back) is type(value) and back == value


@pytest.mark.parametrize('value', [
    np.array([1, 'x'], dtype=object),  # elements are pickles of their own
    np.array(['ab'], dtype='<U2'),
    np.zeros(2, dtype=[('a', 'f4'), ('b', 'i4')]),
    np.array(['2020-01-01'], dtype='datetime64[D]'),
])
def test_other_numpy_arrays_are_refused(value):
    with pytest.raises(MalformedCheckpointError, match='booleans and numbers'):
        unpickle({'a': value})


def test_ndarray_cannot_be_allocated_directly():
    # NEWOBJ(numpy.ndarray, (huge shape,)) would allocate uninitialised memory
    blob = b'\x80\x02' + _global('numpy', 'ndarray') + b'J\x00\x00\x00\x40\x85\x81.'
    with pytest.raises(pickle.UnpicklingError):
        unpickle(blob)


def test_array_data_must_match_its_shape():
    data = pickle.dumps(np.arange(4, dtype=np.float64), protocol=2)
    # claim 40 elements of float64 for 32 bytes of data
    forged = data.replace(b'K\x04\x85', b'K(\x85', 1)
    with pytest.raises(MalformedCheckpointError, match='needs 320 bytes'):
        unpickle(forged)


# ------------------------------------------------------ other allowed values
def test_namespace_and_plain_values_are_rebuilt():
    args = argparse.Namespace(lr=0.1, arch='s', sizes=[1, 2], eps=np.float32(1e-6))
    obj = {'args': args, 'set': {1, 2}, 'frozen': frozenset('ab'), 'c': 1 + 2j,
           'bytes': b'\x00\xff', 'size': torch.Size([2, 3]),
           'device': torch.device('cpu'), 'dtype': torch.bfloat16,
           'od': OrderedDict(a=1)}
    back = unpickle(obj)
    assert type(back['args']) is argparse.Namespace
    assert vars(back['args']) == vars(args)
    assert {k: v for k, v in back.items() if k != 'args'} == \
        {k: v for k, v in obj.items() if k != 'args'}


@pytest.mark.parametrize('encoding', ['rot13', 'hex', 'utf-16'])
def test_codecs_encode_only_builds_latin1_bytes(encoding):
    import codecs
    with pytest.raises(ForbiddenGlobalError, match='_codecs.encode'):
        unpickle(Call(codecs.encode, 'abc', encoding))


def test_bytes_only_builds_empty_bytes():
    assert unpickle([b''])[0] == b''  # protocol 2 writes b'' as bytes()
    with pytest.raises(ForbiddenGlobalError, match='bytes'):
        unpickle(Call(bytes, 10**12))  # would allocate a terabyte


@pytest.mark.parametrize('target', [torch.Tensor, torch.nn.Module, np.save,
                                    argparse.ArgumentParser, pickle.loads])
def test_other_globals_are_refused_by_name(target):
    with pytest.raises(ForbiddenGlobalError) as err:
        unpickle({'x': target})
    assert err.value.global_name.endswith(target.__qualname__.split('.')[-1])


# -------------------------------------------------------------------- tensors
def test_tensors_need_a_storage_read_from_the_archive(tmp_path):
    """_rebuild_tensor_v2 with anything but a storage torch read is refused."""
    fake = Call(torch._utils._rebuild_tensor_v2, Call(OrderedDict), 0, (2, ), (1, ),
                False, Call(OrderedDict))
    path = tmp_path / 'fake.pth'
    torch.save({'w': torch.ones(1)}, path)
    with pytest.raises(MalformedCheckpointError, match='storage of the archive'):
        unpickle(fake)
    torch.save({'w': fake}, path)
    with pytest.raises(CheckpointError, match='storage of the archive'):
        read_checkpoint(path)


def test_backward_hooks_are_refused(tmp_path):
    """A tensor pickled with a backward hook (torch drops hooks when saving; a
    crafted file can name one) is refused."""
    class Hooked:
        def __reduce__(self):  # how torch pickles a tensor, with a hook added
            rebuild, args = torch.arange(3.).__reduce_ex__(2)
            return rebuild, args[:5] + (OrderedDict(hook=Call(OrderedDict)), )

    path = tmp_path / 'hooked.pth'
    torch.save({'w': Hooked()}, path)
    with pytest.raises(CheckpointError, match='without backward hooks'):
        read_checkpoint(path)


def test_no_pickle_opcode_reaches_a_tensor(tmp_path):
    """BUILD on a tensor would call Tensor.__setstate__ (set_ with any size,
    backward hooks): tensors are built after the last opcode, and a state for
    one is refused."""
    class Built:
        def __reduce__(self):
            rebuild, args = torch.arange(3.).__reduce_ex__(2)
            return rebuild, args, (False, None, OrderedDict(h=Call(OrderedDict)))

    path = tmp_path / 'built.pth'
    torch.save({'w': Built()}, path)
    with pytest.raises(CheckpointError, match='a tensor has no pickled state'):
        read_checkpoint(path)


def test_parameters_tensors_and_views_load(tmp_path):
    base = torch.arange(12.).reshape(3, 4)
    obj = {'p': torch.nn.Parameter(torch.ones(2)), 'view': base[1:, ::2],
           'base': base, 'i': torch.arange(3), 'half': torch.ones(2).half()}
    path = tmp_path / 'tensors.pth'
    torch.save(obj, path)
    back = read_checkpoint(path)
    assert type(back['p']) is torch.nn.Parameter and back['p'].requires_grad
    for k, v in obj.items():
        torch.testing.assert_close(back[k], v, rtol=0, atol=0)
    assert back['view'].untyped_storage().data_ptr() == \
        back['base'].untyped_storage().data_ptr()  # shared, as saved


@pytest.mark.skipif(not hasattr(torch, 'uint16'), reason='torch < 2.3 has no uint16')
def test_tensors_saved_with_an_untyped_storage_are_refused(tmp_path):
    """torch >= 2.3 saves uint16 / float8 ... tensors with _rebuild_tensor_v3 and
    the class torch.storage.UntypedStorage, which the reader does not hand out."""
    path = tmp_path / 'u16.pth'
    torch.save({'u': torch.zeros(3, dtype=torch.uint16)}, path)
    with pytest.raises(CheckpointError, match="'torch._utils._rebuild_tensor_v3'"):
        read_checkpoint(path)


def test_a_subclass_that_defines_persistent_load_fails_closed():
    class Sneaky(safe_unpickler.Unpickler):
        def persistent_load(self, pid):
            return pid

    with pytest.raises(RuntimeError, match='persistent_load'):
        Sneaky(io.BytesIO(b''))


def test_nested_too_deeply_is_refused():
    deep = b'\x80\x02' + b']' * 200_000 + b'a' * 199_999 + b'.'
    with pytest.raises(MalformedCheckpointError, match='nested too deeply'):
        unpickle(deep)
