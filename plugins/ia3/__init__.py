"""Built-in IA3 plugin: PEFT's (IA)^3 learned rescaling vectors."""

from adapterhub.plugin import hookimpl


@hookimpl
def register_methods(register):
    from .method import IA3Method

    register(IA3Method())
