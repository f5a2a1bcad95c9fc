"""Reference implementations used by the tests and benchmarks of mmsmlp."""
from .official_smlpnet import OfficialSMLPNet, OfficialSparseMLP

__all__ = ['OfficialSMLPNet', 'OfficialSparseMLP']
