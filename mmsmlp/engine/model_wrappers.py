from mmengine.model import MMDistributedDataParallel

from mmsmlp.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for CPU processes (gloo backend).

    mmengine's Runner passes ``device_ids=[LOCAL_RANK]`` to every DDP wrapper, which
    torch refuses for a module on the CPU; this drops it and is otherwise
    :class:`MMDistributedDataParallel`.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        kwargs.setdefault('broadcast_buffers', False)
        super().__init__(module=module, device_ids=None, **kwargs)
