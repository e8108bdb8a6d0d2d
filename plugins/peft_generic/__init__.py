"""Built-in generic PEFT plugin: every PEFT adapter type that no other plugin claims (LoHa, LoKr,
OFT, BOFT, VeRA, AdaLoRA, FourierFT, HRA, LN tuning and the rest), run by PEFT's own layers.

One method per PEFT type, named after it (``loha`` for ``LOHA``), each a fallback at a lower
priority than any other method, so a plugin written for a type wins. Types the runtime cannot run
(X-LoRA, Poly, prompt learning other than the prompt_learning plugin's) are claimed too, so that
they are recorded by type, and refused when loaded with the reason. Registering imports neither
torch nor peft.
"""

from adapterhub.plugin import hookimpl


@hookimpl
def register_methods(register):
    from .method import generic_methods

    for method in generic_methods():
        register(method)
