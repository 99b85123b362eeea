"""The agent at run time: pipeline, windows, checkpoints, evaluation, replay."""
