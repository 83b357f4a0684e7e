"""Reference models a study measures next to its own: what a bank would deploy today."""

from autocompress.baselines.lightgbm import LightGBMBaseline, fit_lightgbm

__all__ = ["LightGBMBaseline", "fit_lightgbm"]
