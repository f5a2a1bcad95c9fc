# The sMLPNet-T UperNet config, evaluated on whole images instead of sliding
# windows: the test pipeline resizes every image to fit 2048x512 (short side 512
# for ADE20K), so the backbone runs at a different resolution for every image.
# Training is unchanged: test a checkpoint of the base config with
#   python tools/test.py THIS_CONFIG CHECKPOINT
_base_ = './upernet_smlpnet-t_4xb4-160k_ade20k-512x512.py'

model = dict(test_cfg=dict(_delete_=True, mode='whole'))
