from .hooks import WeightsOnlyCheckpointHook
from .model_wrappers import CPUDistributedDataParallel
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = [
    'WeightsOnlyCheckpointHook', 'CPUDistributedDataParallel',
    'LayerDecayOptimWrapperConstructor'
]
