"""The driftline agent: reads a model's prediction log, windows it, tests each window
against the reference profile and exports what it finds."""

__version__ = "0.1.0"
