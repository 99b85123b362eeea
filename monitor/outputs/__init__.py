"""What the agent exports: metric definitions, Prometheus/OTLP, HTTP endpoints, report sinks."""
