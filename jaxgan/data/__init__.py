"""Data: TFDS builders (one module or folder each) and the tf.data input pipeline.

This package imports TensorFlow; nothing under jaxgan.models, losses, steps or sampling does.
"""
