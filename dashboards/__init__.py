"""driftline's Grafana dashboards, built as code with grafana-foundation-sdk.

``python3 -m dashboards.build`` writes the JSON under ``dashboards/json/``; the PromQL
comes from :mod:`dashboards.queries`, built from the metric definitions of
:mod:`monitor.outputs.metrics`. docs/dashboards.md describes the dashboards and how to provision
them.
"""
