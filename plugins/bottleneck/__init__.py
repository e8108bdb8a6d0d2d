"""Built-in bottleneck plugin: sequential, double and parallel bottleneck adapters (AdapterHub format)
on BERT-family encoders, GPT-2 and Llama-family decoders."""

from adapterhub.plugin import hookimpl


@hookimpl
def register_methods(register):
    from .method import BottleneckMethod

    register(BottleneckMethod())
