# UperNet with sMLPNet-T on ADE20K with layer-wise lr decay (as in ConvNeXt's and
# BEiT's ADE20K recipes): AdamW lr 1e-4, weight decay 0.05, and the lr of backbone
# depth d (stem 0 ... 27, see SMLPNet.get_layer_depth) scaled by
# 0.95 ** (27 - d): the stem gets 0.25x, like BEiT's 0.9 over 12 layers, the last
# blocks, the output norm and the heads the full lr.
_base_ = './upernet_smlpnet-t_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(
    imports=['mmsmlp', 'mmsmlp.datasets', 'mmsmlp.engine.optimizers'],
    allow_failed_imports=False)

optim_wrapper = dict(
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    # merged with the base's paramwise_cfg: still no decay on norms / axial biases
    paramwise_cfg=dict(layer_decay_rate=0.95, layer_decay_module='backbone'))
