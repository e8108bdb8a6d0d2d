"""Helpers that method plugins may use: public, documented, below the runtime (as PEFT's
``tuners_utils.py`` sits beside its tuners). Importing this package imports no torch."""
