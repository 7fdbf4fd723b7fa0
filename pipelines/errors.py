"""Errors raised by the pipelines, each with a message a person can act on."""


class PipelineError(Exception):
    """Base class of every error the pipelines raise on purpose."""


class InvalidInputError(PipelineError, ValueError):
    """An argument has a value the pipeline cannot use; the message names it."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message


class ModelNotFoundError(PipelineError):
    """Weights the chosen engine needs are not installed under MODELS_DIR."""


class GenerationError(PipelineError):
    """The generation itself failed (out of memory, a broken model file, ...)."""


class GenerationCancelled(PipelineError):
    """The caller asked to stop; raised at the next step boundary."""


class UntrustedModelError(PipelineError):
    """A model file is not allowed to load: not in the sha256 manifest, or changed since it was
    listed, or the process is set up so that loading it could run code from it."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the GPU running out of memory (torch's ``OutOfMemoryError`` is a
    ``RuntimeError`` saying so, as are the other backends' and older torch's)."""
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
