"""Operator tools for the four services: ``python -m ops --help``."""
