"""Data: one package per dataset (see `datasets`), image files, and the tf.data input pipeline.

This package imports TensorFlow; nothing under jaxgan.models, losses, steps or sampling does.
"""
