"""Experiments that reproduce the paper's research questions (``instyle experiment NAME``)."""
