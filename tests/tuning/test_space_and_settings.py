"""The search space comes from DEARIConfig's fields; the script's flags come from SweepSettings."""

from __future__ import annotations

import dataclasses

import pytest
from ray import tune

from gapray.imputation import BRITSConfig, DEARIConfig
from gapray.sweep import OFF, SMOKE_SPACE, SweepSettings, SweepSpace, build_parser, config_from_params, param_space
from gapray.sweep.settings import SMOKE_VALUES, parse_settings


def test_every_swept_name_is_a_deari_config_field_and_samples_stay_in_range() -> None:
    space = param_space(DEARIConfig, SweepSpace())
    assert set(space) == {f.name for f in dataclasses.fields(SweepSpace)}
    assert set(space) <= {f.name for f in dataclasses.fields(DEARIConfig)}
    assert space["n_layers"].categories == list(range(1, 11))
    assert space["unfreeze_every"].categories == [OFF, 50, 100, 200]
    for _ in range(20):
        lr = space["lr"].sample()
        margin = space["dml_margin"].sample()
        assert 1e-4 <= lr <= 3e-3 and 0.05 <= margin <= 0.5
    assert isinstance(space["lr"], tune.search.sample.Float)


def test_a_space_naming_a_field_the_config_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="'n_layers' is not a field of BRITSConfig"):
        param_space(BRITSConfig, SweepSpace())


def test_off_means_deterministic_and_a_period_means_bayesian() -> None:
    base = DEARIConfig(epochs=3)
    off = config_from_params(base, {"unfreeze_every": OFF, "n_layers": 2})
    on = config_from_params(base, {"unfreeze_every": 100, "n_samples": 5})
    assert (off.bayesian, off.unfreeze_every, off.n_layers, off.epochs) == (False, None, 2, 3)
    assert (on.bayesian, on.unfreeze_every, on.n_samples) == (True, 100, 5)


def test_trial_params_are_validated_by_the_config_dataclass() -> None:
    with pytest.raises(ValueError, match="not divisible by attention_heads"):
        config_from_params(DEARIConfig(), {"n_layers": 2, "hidden_size": 18})
    with pytest.raises(ValueError, match="not fields of DEARIConfig"):
        config_from_params(DEARIConfig(), {"depth": 2})


def test_smoke_space_is_a_valid_tiny_subset() -> None:
    space = param_space(DEARIConfig, SMOKE_SPACE)
    assert max(space["n_layers"].categories) <= 2


def test_flags_are_generated_from_the_settings_dataclass() -> None:
    parser = build_parser()
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    assert {f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(SweepSettings)} <= flags
    settings = parse_settings(["--smoke-test", "--gpus-per-trial", "0.5", "--address", "auto", "--num-samples", "2"])
    assert settings.smoke_test and settings.gpus_per_trial == 0.5 and settings.address == "auto"
    assert "--tracking-uri" in parser.format_help() and "sqlite:///mlflow.db" in parser.format_help()


def test_smoke_test_changes_only_flags_left_at_their_defaults() -> None:
    smoke = SweepSettings(smoke_test=True, num_samples=2).effective()
    assert smoke.num_samples == 2  # given explicitly
    assert smoke.epochs == SMOKE_VALUES["epochs"] and smoke.max_records == SMOKE_VALUES["max_records"]
    assert SweepSettings(num_samples=2).effective() == SweepSettings(num_samples=2)
    assert SweepSettings.from_json(smoke.to_json()) == smoke


def test_gapray_sweep_command_takes_the_same_flags() -> None:
    from gapray.cli import build_parser as gapray_parser

    args = gapray_parser().parse_args(["sweep", "--smoke-test", "--gpus-per-trial", "0", "--address", "auto"])
    assert args.handler.__name__ == "_sweep"
    assert (args.smoke_test, args.gpus_per_trial, args.address) == (True, 0.0, "auto")


def test_every_trial_starts_from_the_sweep_settings_on_the_chosen_device() -> None:
    from gapray.sweep import TrialResources
    from gapray.sweep.runner import base_config

    settings = SweepSettings(smoke_test=True, dml=False).effective()
    on_gpu = base_config(settings, TrialResources(cpu=1, gpu=0.5, max_concurrent=2))
    on_cpu = base_config(settings, TrialResources(cpu=1, gpu=0, max_concurrent=2))
    assert isinstance(on_gpu, DEARIConfig)
    assert (on_gpu.device, on_cpu.device) == ("cuda", "cpu")
    assert (on_cpu.epochs, on_cpu.patience, on_cpu.batch_size, on_cpu.dml) == (2, 2, 64, False)


def test_demo_preset_applies_its_values_once_and_excludes_the_smoke_test() -> None:
    from gapray.sweep.settings import DEMO_VALUES

    demo = SweepSettings(demo=True, epochs=7).effective()
    assert demo.epochs == 7  # given explicitly
    assert (demo.dataset, demo.num_samples, demo.time_budget_s) == ("beijing-air", DEMO_VALUES["num_samples"],
                                                                    DEMO_VALUES["time_budget_s"])
    assert demo.effective() == demo and SweepSettings.from_json(demo.to_json()).effective() == demo
    assert demo.preset == "demo" and SweepSettings(smoke_test=True).preset == "smoke" and SweepSettings().preset is None
    with pytest.raises(ValueError, match="choose one of --smoke-test and --demo"):
        SweepSettings(smoke_test=True, demo=True)
    with pytest.raises(ValueError, match="time_budget_s must be positive"):
        SweepSettings(time_budget_s=0)
    assert parse_settings(["--demo", "--no-download"]).download is False


def test_each_preset_has_its_space_and_the_demo_space_is_a_valid_config_subset() -> None:
    from gapray.sweep.space import DEMO_SPACE, space_for

    assert (space_for("smoke"), space_for("demo"), space_for(None)) == (SMOKE_SPACE, DEMO_SPACE, SweepSpace())
    space = param_space(DEARIConfig, DEMO_SPACE)
    assert space["n_layers"].categories == [1, 2] and (space["cell"], space["attention_feedforward"]) == ("gru", 128)
    config = config_from_params(DEARIConfig(), {name: getattr(domain, "sample", lambda d=domain: d)()
                                                for name, domain in space.items()})
    assert config.cell == "gru" and config.hidden_size == 64 and config.n_layers in (1, 2)


def test_a_trial_run_is_named_by_its_config() -> None:
    from gapray.sweep import run_name

    params = {"n_layers": 3, "hidden_size": 64, "dml_margin": 0.2412, "unfreeze_every": 100, "lr": 0.00193,
              "cell": "gru", "n_samples": 10}
    assert run_name(params) == "d3-h64-m0.24-u100-lr1.9e-3"
    params = {"n_layers": 1, "dml_margin": 0.05, "unfreeze_every": OFF, "lr": 0.0123}
    assert run_name(params) == "d1-m0.05-uoff-lr1.2e-2"
    assert run_name({}) == ""


def test_the_logged_search_space_names_each_rule_and_its_values() -> None:
    from gapray.sweep.space import DEMO_SPACE, describe_space

    described = describe_space(DEMO_SPACE)
    assert described["lr"] == {"sample": "loguniform", "range": [2e-3, 8e-3]}
    assert described["dml_margin"] == {"sample": "uniform", "range": [0.05, 0.5]}
    assert described["unfreeze_every"] == {"sample": "choice", "values": [OFF, 50]}
    assert described["hidden_size"] == {"sample": "fixed", "values": [64]}
    assert set(described) == {f.name for f in dataclasses.fields(SweepSpace)}


def test_the_demo_starts_from_configs_inside_its_own_space() -> None:
    from gapray.sweep.space import DEMO_FIRST_CONFIGS, DEMO_SPACE, first_configs

    assert first_configs("demo") == [dict(c) for c in DEMO_FIRST_CONFIGS] and first_configs(None) == []
    first_configs("demo")[0]["lr"] = 1.0  # a copy: the constant is untouched
    assert DEMO_FIRST_CONFIGS[0]["lr"] == 4e-3
    for config in DEMO_FIRST_CONFIGS:
        for name, value in config.items():
            allowed = getattr(DEMO_SPACE, name)
            if name in ("lr", "dml_margin"):
                assert allowed[0] <= value <= allowed[1]
            else:
                assert value in allowed
        config_from_params(DEARIConfig(), config)  # a valid DEARIConfig


def _trials_started(settings: SweepSettings, own_space: bool, fits: int) -> list[dict]:
    """Configs Tune's search hands out before any trial finishes, on a cluster that fits ``fits`` trials."""
    from ray.tune.experiment import Experiment

    from gapray.sweep import TrialResources
    from gapray.sweep.runner import search_algorithm
    from gapray.sweep.space import DEMO_SPACE

    search = search_algorithm(settings.effective(), TrialResources(cpu=1, gpu=0, max_concurrent=fits), own_space)
    search.add_configurations([Experiment("t", lambda config: None, config=param_space(DEARIConfig, DEMO_SPACE),
                                          num_samples=6)])
    configs = []
    while (trial := search.next_trial()) is not None:
        configs.append(trial.config)
    return configs


def test_the_search_caps_concurrent_trials_and_starts_the_demo_from_its_first_configs() -> None:
    from gapray.sweep.space import DEMO_FIRST_CONFIGS

    started = _trials_started(SweepSettings(demo=True), own_space=True, fits=2)
    assert [{k: c[k] for k in first} for c, first in zip(started, DEMO_FIRST_CONFIGS)] == list(DEMO_FIRST_CONFIGS)
    assert len(started) == 2  # what the cluster fits
    capped = _trials_started(SweepSettings(demo=True, max_concurrent_trials=1), own_space=False, fits=2)
    assert len(capped) == 1  # the flag wins
    assert capped[0]["lr"] != DEMO_FIRST_CONFIGS[0]["lr"]  # a space given by the caller is sampled


def test_a_sweep_on_a_table_is_named_and_described_as_one() -> None:
    from gapray.sweep.runner import champion_description, data_label

    on_table = SweepSettings(data="/data/plant.csv", id_col="unit", time_col="ts")
    assert data_label(on_table) == "table plant.csv" and data_label(SweepSettings()) == "physionet2012"
    text = champion_description(on_table, "s1", "d2-m0.30", 0.21, 0.2049, 0.3)
    assert text.startswith("Best trial `d2-m0.30` of sweep `s1` (table plant.csv): validation MAE 0.2100, "
                           "test MAE 0.2049 (LOCF 0.3000).")
    assert "columns `unit`, `ts`" in text and "array" not in text
    assert "an array [records, steps, features]" in champion_description(SweepSettings(), "s1", "d1", 0.2, 0.2, 0.3)
