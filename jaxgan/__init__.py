"""jaxgan: adversarial learning of label dependency (Tsai & Lee) in JAX/Flax."""

__version__ = "0.1.0"
