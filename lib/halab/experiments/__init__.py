"""Failure rehearsals as data (the plan's phase 5 tests and its failure scenarios).

- `model`: an experiment (its fault, the apps it follows, its limits) and the plan's own;
- `expect`: what the planner says will happen, for this inventory;
- `journal`: what a fault changed and how to undo it, written before the fault;
- `faults`: the faults and their undo actions, each a plain action a later process can run;
- `probes`: the samplers watched while a fault lasts, every sample kept;
- `timeline`: events from the samples, the swimlane figure, predicted against observed;
- `runner`: one experiment from steady state to steady state, undone in a `finally`.
"""
