"""Built-in LoRA plugin: PEFT's LoRA (rsLoRA, DoRA, rank/alpha patterns, embeddings, Conv1D,
modules_to_save), and QLoRA, the same files on a bitsandbytes 4-bit base (as PEFT keeps its
quantized LoRA layers inside ``tuners/lora``)."""

from adapterhub.plugin import hookimpl


@hookimpl
def register_methods(register):
    from .method import LoraMethod
    from .qlora import QLoraMethod

    register(LoraMethod())
    register(QLoraMethod())
