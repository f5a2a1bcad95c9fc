from .hooks import AtomicCheckpointHook, WeightsOnlyCheckpointHook
from .model_wrappers import CPUDistributedDataParallel
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = [
    'AtomicCheckpointHook', 'WeightsOnlyCheckpointHook', 'CPUDistributedDataParallel',
    'LayerDecayOptimWrapperConstructor'
]
