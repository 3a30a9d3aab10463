"""Part of the twin; see halab/twin/__init__.py."""
