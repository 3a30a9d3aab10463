"""The inventory: the plan's cluster as typed data, and the only reader of params YAML."""

from halab.inventory.loader import inventory_from_data, load_inventory
from halab.inventory.model import App, Host, Inventory, Node

__all__ = ["App", "Host", "Inventory", "Node", "inventory_from_data", "load_inventory"]
