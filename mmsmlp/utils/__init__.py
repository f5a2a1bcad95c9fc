"""Utilities of mmsmlp that are not models: reading checkpoints safely (importing
this package routes mmengine's checkpoint loading through it) and the shared
checkpoint-converter helpers."""
from .checkpoint import (CheckpointError, KeyRule, check_against_model, check_finite,
                         conv1x1_to_linear, load_state_source, read_checkpoint,
                         rename_keys, save_converted_checkpoint)

__all__ = [
    'CheckpointError', 'KeyRule', 'read_checkpoint', 'check_finite',
    'check_against_model',
    'load_state_source',
    'rename_keys', 'conv1x1_to_linear', 'save_converted_checkpoint'
]
