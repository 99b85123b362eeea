"""Ground truth: label records decoded, joined to predictions by request id in bounded,
checkpointed state, and turned into each window's ``performance`` block."""
