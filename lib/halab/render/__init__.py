"""Inventory -> files: the Flux GitOps tree and the configs that live outside Kubernetes."""

from halab.render.tree import objects_table, render

__all__ = ["objects_table", "render"]
