"""Built-in QLoRA plugin: LoRA on a bitsandbytes 4-bit base, with an exact, reversible merge."""

from adapterhub import hookimpl


@hookimpl
def register_methods(register):
    from .method import QLoraMethod

    register(QLoraMethod())
