from .hooks import WeightsOnlyCheckpointHook
from .model_wrappers import CPUDistributedDataParallel

__all__ = ['WeightsOnlyCheckpointHook', 'CPUDistributedDataParallel']
