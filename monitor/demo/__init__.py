"""The live demo: a synthetic drifting model, the embedded broker launcher, the live view."""
