"""Built-in LoRA plugin: PEFT's LoRA (rsLoRA, DoRA, rank/alpha patterns, embeddings, Conv1D, modules_to_save)."""

from adapterhub import hookimpl


@hookimpl
def register_methods(register):
    from .method import LoraMethod

    register(LoraMethod())
