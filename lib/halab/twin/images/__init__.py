"""What the twin runs for a container image: the real program where this machine has it,
else a stand-in or a placeholder (catalogue.py decides, one place for every image)."""
