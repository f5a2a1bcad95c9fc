import io
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mmsmlp.engine.hooks import WeightsOnlyCheckpointHook, from_plain, to_plain


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_message_hub_survives_a_weights_only_roundtrip():
    hub = MessageHub('test_hook_roundtrip')
    for i in range(5):
        hub.update_scalar('train/loss', np.float64(1.0 / (i + 1)))
    hub.update_info('iter', np.int64(5))
    sd = OrderedDict(w=torch.ones(2))
    sd._metadata = OrderedDict({'': {'version': 1}})
    ckpt = {'meta': {'seed': np.int64(3), 'lr': np.float32(0.5)},
            'state_dict': sd, 'message_hub': hub.state_dict()}
    with pytest.raises(Exception, match='Weights only load failed'):
        _roundtrip(ckpt)  # what mmengine saves by default is refused

    WeightsOnlyCheckpointHook().before_save_checkpoint(None, ckpt)
    loaded = _roundtrip(ckpt)
    assert loaded['meta'] == {'seed': 3, 'lr': 0.5}
    assert type(loaded['meta']['seed']) is int
    assert loaded['state_dict']._metadata == {'': {'version': 1}}
    WeightsOnlyCheckpointHook().after_load_checkpoint(None, loaded)
    restored = MessageHub('test_hook_restored')
    restored.load_state_dict(loaded['message_hub'])
    buf = restored.get_scalar('train/loss')
    assert isinstance(buf, HistoryBuffer)
    np.testing.assert_allclose(buf.data[0], [1 / (i + 1) for i in range(5)])
    assert buf.current() == pytest.approx(0.2)
    assert restored.get_info('iter') == 5


def test_objects_that_cannot_be_plain_are_named():
    class Thing:
        pass

    with pytest.raises(TypeError, match=r"checkpoint\['meta'\]\['x'\].*Thing"):
        to_plain({'meta': {'x': Thing()}})


def test_from_plain_leaves_other_data_alone():
    data = {'a': [1, {'b': torch.zeros(1)}], 'c': 'x'}
    assert from_plain(to_plain(data))['a'][0] == 1
