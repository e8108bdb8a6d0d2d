"""Helpers shared by the test areas: ``support.fixtures`` (paths of the saved reference cases and
their loaders) and ``support.reference_math`` (the adapter formulas written out, each first checked
against outputs the libraries produced). Imported as ``support.*``: ``tests/`` is on ``sys.path``."""
