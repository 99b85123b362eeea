"""Benchmarks that print tables. Nothing here is imported by the agent or asserted in tests."""
