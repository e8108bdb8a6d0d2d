"""The adapter runtime: :class:`AdapterModel` and helpers for method plugins.

Nothing here imports torch at import time; ``adapterhub.runtime.model`` does, lazily reached through
``adapterhub.AdapterModel``.
"""
