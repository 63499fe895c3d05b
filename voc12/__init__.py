"""PASCAL VOC 2012 data: class names, id lists, annotations, datasets."""

CAT_LIST = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]
CLASS_NAMES = ["background", *CAT_LIST]
NUM_CLASSES = 21
IGNORE = 255
