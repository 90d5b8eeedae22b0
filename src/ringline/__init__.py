"""Ringline: self-hostable audio/video calling. Server, protocol and Python SDK."""

from .core import *  # noqa: F403
from .core import __all__ as _core_all

__version__ = "0.1.0"
__all__ = sorted(_core_all)
