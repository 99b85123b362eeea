"""Multivariate drift: tests on whole rows, which see what per-column tests cannot (a
correlation appearing between features whose marginals stay the same, or many small
coordinated moves).

- ``preprocess``: the window's reservoir and the profile's row sample, encoded alike;
- ``mmd``: kernel MMD² with a blocked, batched permutation test (numpy or torch);
- ``classifier``: a classifier two-sample test that names the separating features;
- ``online_mmd``: a sliding-window MMD calibrated to an expected run time;
- ``detector``: runs the configured tests on a window; ``result``: what they report.

Kept import-light: torch is imported only when a torch device is used.
"""
