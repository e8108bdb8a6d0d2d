"""The adapter runtime: :class:`AdapterModel` and what it needs (heads, composition dispatch,
merge planning, sources). Nothing here imports torch at import time; ``adapterhub.runtime.model``
does, lazily reached through ``adapterhub.AdapterModel``.
"""
