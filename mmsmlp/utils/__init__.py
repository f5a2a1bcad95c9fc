"""Utilities of mmsmlp that are not models: the shared checkpoint-converter helpers."""
from .checkpoint import (DEFAULT_SAFE_GLOBALS, CheckpointError, KeyRule,
                         check_against_model,
                         conv1x1_to_linear, load_state_source, read_checkpoint,
                         rename_keys,
                         save_converted_checkpoint)

__all__ = [
    'CheckpointError', 'KeyRule', 'DEFAULT_SAFE_GLOBALS', 'read_checkpoint',
    'check_against_model',
    'load_state_source',
    'rename_keys', 'conv1x1_to_linear', 'save_converted_checkpoint'
]
