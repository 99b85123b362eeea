"""Explainability: the model file, its SHAP attributions, and attribution drift per window.

``loader`` reads the model file (XGBoost, LightGBM, scikit-learn through skops, pickle only
on request), ``explainers`` computes SHAP values, ``window`` puts them in the serving path.
The statistics live in ``detectors.attribution``. Model libraries and shap are optional
extras, imported only when a model is configured.
"""
