"""Where a model runs, and at what precision: the value a worker is given (:class:`Runtime`), the policy
(:func:`choose`), the sessions (:func:`open_session`), the fidelity bar and the shipped int8 networks."""

from restyle.runtime.base import CPU, CUDA, Choice, Runtime, choose
from restyle.runtime.sessions import Pixels, Session, open_session

__all__ = ["CPU", "CUDA", "Choice", "Pixels", "Runtime", "Session", "choose", "open_session"]
