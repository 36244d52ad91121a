"""gapray: learning from incomplete multivariate time series on Ray.

Two methods: DEARI imputation with uncertainty (:mod:`gapray.imputation`) and GIL gradient
importance learning (:mod:`gapray.gil`, environments in :mod:`gapray_envs`).
"""

__version__ = "0.1.0"
