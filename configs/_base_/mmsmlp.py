# Included by every mmsmlp config: registers the backbones, and makes checkpoints
# plain data that torch.load(weights_only=True) accepts (resume / load_from / init_cfg).
custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)
custom_hooks = [dict(type='WeightsOnlyCheckpointHook')]
