from .atomic_checkpoint_hook import (AtomicCheckpointHook, AtomicLocalBackend,
                                     partial_files, write_atomically)
from .weights_only_checkpoint_hook import (WeightsOnlyCheckpointHook, from_plain,
                                           to_plain)

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'write_atomically', 'partial_files',
    'WeightsOnlyCheckpointHook', 'to_plain', 'from_plain'
]
