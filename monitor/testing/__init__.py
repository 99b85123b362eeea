"""Real-service helpers shared by the integration tests and `driftline demo`."""
