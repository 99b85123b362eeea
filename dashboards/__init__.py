"""driftline's Grafana dashboards, built as code with grafana-foundation-sdk.

``python3 -m dashboards.build`` writes the JSON under ``dashboards/json/``; the PromQL
comes from :mod:`dashboards.queries`, built from the metric definitions of
:mod:`monitor.outputs.metrics`. One module per dashboard (:mod:`dashboards.fleet`,
:mod:`dashboards.model` with its rows, :mod:`dashboards.agent`), the shared panel
builders in :mod:`dashboards.panels`. docs/dashboards.md describes the dashboards, where
a new panel goes and how to provision them.
"""
