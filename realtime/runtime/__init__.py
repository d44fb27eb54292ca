"""The one owner of process state, and the rules of what follows each change of that state."""

from .runtime import Runtime, get_runtime, reset_runtime, runtime_started, runtime_stopping

__all__ = [
    "Runtime",
    "get_runtime",
    "reset_runtime",
    "runtime_started",
    "runtime_stopping",
]
