"""The local functions the agent may call: the argument checker (arguments), the allow-listed
actions (actions) and the runner that bounds calls in number, rate, threads and time (runner)."""

from .actions import COMMAND_ENV, PLACEHOLDER, ActionError, Mixer, build_argv, placeholders
from .arguments import placeholder_problems, schema_problems, validate_arguments
from .runner import (
    CLOSE_TIMEOUT,
    MAX_CALLS_IN_FLIGHT,
    MAX_CALLS_PER_MINUTE,
    MAX_CALLS_PER_REQUEST,
    FunctionRunner,
)

__all__ = [
    "ActionError",
    "build_argv",
    "CLOSE_TIMEOUT",
    "COMMAND_ENV",
    "FunctionRunner",
    "MAX_CALLS_IN_FLIGHT",
    "MAX_CALLS_PER_MINUTE",
    "MAX_CALLS_PER_REQUEST",
    "Mixer",
    "PLACEHOLDER",
    "placeholder_problems",
    "placeholders",
    "schema_problems",
    "validate_arguments",
]
