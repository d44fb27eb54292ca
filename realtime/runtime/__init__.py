"""The one owner of process state, and the rules of what follows each change of that state."""

from .runtime import Runtime, current_runtime, get_runtime, reset_runtime, runtime_started, runtime_stopping

__all__ = [
    "Runtime",
    "current_runtime",
    "get_runtime",
    "reset_runtime",
    "runtime_started",
    "runtime_stopping",
]
