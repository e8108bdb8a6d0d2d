"""Built-in BitFit plugin: train only the bias terms."""

from adapterhub.plugin import hookimpl


@hookimpl
def register_methods(register):
    from .method import BitFitMethod

    register(BitFitMethod())
