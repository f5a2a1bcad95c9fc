from .resmlp import ResMLP
from .s2mlp import S2MLP
from .smlpnet import SMLPNet

__all__ = ['SMLPNet', 'ResMLP', 'S2MLP']
