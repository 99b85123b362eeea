"""monitor.yaml: the validated configuration model, its rules and durations."""
