"""On-disk adapter formats other than PEFT's own (PEFT is each method's native form).

:mod:`adapterhub.formats.adapters` reads and writes AdapterHub's ``adapters``-library format and
converts it to and from the canonical (PEFT-like) form the methods work with. No torch at import.
"""

from .adapters import is_adapters_format

__all__ = ["is_adapters_format"]
