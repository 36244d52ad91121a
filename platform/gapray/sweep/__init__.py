"""The DEARI hyper-parameter sweep on Ray Tune (issue 7): space, resources, trainable, runner."""

from gapray.sweep.resources import ResourceError, TrialResources, choose_trial_resources
from gapray.sweep.runner import SweepError, SweepOutcome, format_report, load_split, run_sweep
from gapray.sweep.settings import SweepSettings, build_parser, parse_settings
from gapray.sweep.space import DEMO_SPACE, OFF, SMOKE_SPACE, SweepSpace, config_from_params, param_space, run_name
from gapray.sweep.trainable import TrialContext, evaluate_imputation, train_imputer

__all__ = [
    "DEMO_SPACE",
    "OFF",
    "SMOKE_SPACE",
    "ResourceError",
    "SweepError",
    "SweepOutcome",
    "SweepSettings",
    "SweepSpace",
    "TrialContext",
    "TrialResources",
    "build_parser",
    "choose_trial_resources",
    "config_from_params",
    "evaluate_imputation",
    "format_report",
    "load_split",
    "param_space",
    "parse_settings",
    "run_name",
    "run_sweep",
    "train_imputer",
]
