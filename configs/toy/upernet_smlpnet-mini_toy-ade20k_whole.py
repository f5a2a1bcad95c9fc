# The toy UperNet, evaluated on whole images: every validation image (96-256 px
# sides, any aspect ratio) is resized to a long side of 256 and goes through the
# network at once, so the backbone resizes its axial weights to a new token grid
# for almost every image. Training is unchanged; test a checkpoint of the base
# config with
#   python tools/test.py configs/toy/upernet_smlpnet-mini_toy-ade20k_whole.py CKPT
_base_ = './upernet_smlpnet-mini_toy-ade20k.py'

model = dict(test_cfg=dict(_delete_=True, mode='whole'))
