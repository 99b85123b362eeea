"""Offline jobs over data too big for one machine (an optional extra: distributed)."""
