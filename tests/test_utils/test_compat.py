"""mmsmlp.utils.compat: the version-dependent torch APIs answer the same on every
supported torch release."""
import threading

import torch

from mmsmlp.utils.compat import is_autocast_enabled


def test_is_autocast_enabled_per_device_type():
    assert not is_autocast_enabled('cpu') and not is_autocast_enabled('cuda')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert is_autocast_enabled('cpu')
        assert not is_autocast_enabled('cuda')  # CPU autocast says nothing of CUDA
        with torch.autocast('cpu', enabled=False):
            assert not is_autocast_enabled('cpu')
        # autocast is per thread
        seen = []
        worker = threading.Thread(target=lambda: seen.append(is_autocast_enabled('cpu')))
        worker.start()
        worker.join()
        assert seen == [False]
    assert not is_autocast_enabled('cpu')
    # a device type autocast does not know
    assert is_autocast_enabled('meta') is False
