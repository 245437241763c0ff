"""Data: one package per dataset (see `datasets`), prepared records, image files, the Grain
input pipeline and the device augmentation.

Reading imports no TensorFlow; only preparing a dataset does (`prepare`, the TFDS builders).
"""
