from .weights_only_checkpoint_hook import (WeightsOnlyCheckpointHook, from_plain,
                                           to_plain)

__all__ = ['WeightsOnlyCheckpointHook', 'to_plain', 'from_plain']
