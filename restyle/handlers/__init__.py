"""Models: a batch of uint8 RGB frames in, the same batch restyled out. Knows nothing of video."""
from restyle.handlers.base import Model, ModelSpec, load_model
from restyle.runtime import Runtime

__all__ = ["Model", "ModelSpec", "Runtime", "load_model"]
