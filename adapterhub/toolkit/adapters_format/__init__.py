"""AdapterHub's ``adapters``-library on-disk format, for method plugins that read or write it.

:mod:`.layout` (detection, raw weights, base prefixes, writing a folder) and :mod:`.heads`
(prediction heads saved beside an adapter). Each method converts its own architecture to and from
its canonical form. No torch at import.
"""

from .layout import architecture, is_adapters_format, rebase_keys

__all__ = ["architecture", "is_adapters_format", "rebase_keys"]
