"""Reading the prediction log: sources, decoding, micro-batches, deduplication."""
