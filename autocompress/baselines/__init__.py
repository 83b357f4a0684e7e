"""Reference models a study measures next to its own: what a bank would deploy today.

`lightgbm` (gradient-boosted trees over the raw columns) and `logistic` (the
scorecard-like linear model over our features); `study` fits, scores and times them
once per credit study. Import the submodule you need: lightgbm loads only when used.
"""

BASELINES_ATTR = "autocompress:baselines"
"""The study user attribute holding each baseline's test scores and measurement."""
