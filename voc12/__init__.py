"""PASCAL VOC 2012 data: id lists, annotations, datasets.

``CAT_LIST``, ``CLASS_NAMES``, ``NUM_CLASSES`` and ``IGNORE`` live in :mod:`vocabulary`; they are
re-exported here because user code imports them as ``from voc12 import CAT_LIST``.
"""

from vocabulary import CAT_LIST, CLASS_NAMES, IGNORE, NUM_CLASSES

__all__ = ["CAT_LIST", "CLASS_NAMES", "IGNORE", "NUM_CLASSES"]
