"""Reference implementations used by the tests and benchmarks of mmsmlp."""
from .official_smlpnet import OfficialSMLPNet, OfficialSparseMLP
from .weights import randomise_weights

__all__ = ['OfficialSMLPNet', 'OfficialSparseMLP', 'randomise_weights']
