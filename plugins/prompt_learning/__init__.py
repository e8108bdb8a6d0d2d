"""Built-in prompt-learning plugin: prompt tuning, prefix tuning and P-tuning (PEFT format;
AdapterHub-format prompt/prefix tuning read and written too)."""

from adapterhub.plugin import hookimpl


@hookimpl
def register_methods(register):
    from .method import PrefixTuningMethod, PromptTuningMethod, PTuningMethod

    register(PromptTuningMethod())
    register(PrefixTuningMethod())
    register(PTuningMethod())
