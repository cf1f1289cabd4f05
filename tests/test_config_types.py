"""recsys_core.config: every config section is built by the one builder, and whatever a user can get wrong in it is
one clear ConfigError naming `section.key`."""
import pytest

from recsys_core.config import Config, build
from recsys_core.errors import ConfigError

from recsys_spark.als import AlsConfig
from recsys_spark.baselines import BaselinesConfig
from recsys_spark.etl import EtlConfig
from recsys_spark.evaluate import EvaluateConfig
from recsys_spark.sequences import SequenceConfig


@pytest.mark.parametrize("cls, values, message", [
    (AlsConfig, {"name": 5}, "als.name must be `als` or als_<name> .*, got 5"),
    (AlsConfig, {"rank": 2.5}, "als.rank must be a positive integer, got 2.5"),
    (AlsConfig, {"rank": True}, "als.rank must be a positive integer, got True"),
    (AlsConfig, {"rank": 0}, "als.rank must be a positive integer, got 0"),
    (AlsConfig, {"random_split_train_fraction": 1}, r"als.random_split_train_fraction must be a number in \(0, 1\)"),
    (AlsConfig, {"grid": {"rank": [8], "ranks": [8]}}, r"unknown config key\(s\) als.grid.ranks"),
    (AlsConfig, {"implicit_prefs": "abc"}, "als.implicit_prefs must be bool"),
    (AlsConfig, {"num_blocks": "abc"}, "als.num_blocks must be int | None"),
    (AlsConfig, [1], "the als config section must be a mapping"),
    (AlsConfig, {"grid": [1]}, "als.grid must be a mapping"),
    (EtlConfig, {"kcore": 5}, "the etl.kcore config section must be a mapping"),
    (EtlConfig, {"kcore": {"min_user_interactions": "x"}}, "etl.kcore.min_user_interactions must be an integer >= 0"),
    (EtlConfig, {"kcore": {"min_user_interactions": -1}}, "etl.kcore.min_user_interactions must be an integer >= 0"),
    (EtlConfig, {"kcore": {"bogus": 1}}, r"unknown config key\(s\) etl.kcore.bogus; known keys of etl.kcore: "),
    (EtlConfig, {"tie_break": "time"}, "etl.tie_break must be one of movieId, hash"),
    (SequenceConfig, {"max_len": "a"}, "sequences.max_len must be a positive integer, got 'a'"),
    (SequenceConfig, {"stride": 0}, "sequences.stride must be null or a positive integer"),
    (SequenceConfig, {"stride": 300}, "sequences.stride=300 is larger than max_len=200"),
    (BaselinesConfig, {"models": 5}, "baselines.models must be a list of str, got 5"),
    (BaselinesConfig, {"models": ["popularity", 3]}, r"baselines.models\[1\] must be str, got 3"),
    (BaselinesConfig, {"models": ["popularity", "als"]}, "must be a non-empty subset of"),
    (BaselinesConfig, {"genre": {"top_genres": "x"}}, "baselines.genre.top_genres must be a positive integer"),
    (BaselinesConfig, {"genre": {"top_genres": 0}}, "baselines.genre.top_genres must be a positive integer"),
    (BaselinesConfig, {"hybrid": {"alpha": True}}, r"baselines.hybrid.alpha must be a number in \[0, 1\], got True"),
    (BaselinesConfig, {"markov": [1]}, "the baselines.markov config section must be a mapping"),
    (BaselinesConfig, {"bogus": 1}, r"unknown config key\(s\) baselines.bogus"),
    (BaselinesConfig, {"itemcf": {"max_user_items": 1}}, "baselines.itemcf.max_user_items must be null or an integer >= 2"),
    (EvaluateConfig, {"ks": ["a"]}, r"evaluate.ks must be a non-empty list of distinct positive integers, got \['a'\]"),
    (EvaluateConfig, {"ks": [10, 10]}, "evaluate.ks must be a non-empty list of distinct positive integers"),
])
def test_wrong_values_name_their_section_and_key(cls, values, message):
    with pytest.raises(ConfigError, match=message):
        cls.from_dict(values)


def test_right_values_still_build():
    assert AlsConfig.from_dict({"reg_param": 1, "num_blocks": None, "checkpoint_dir": None}).reg_param == 1
    assert EtlConfig.from_dict({"kcore": None}).kcore.enabled is False
    assert EtlConfig.from_dict({"kcore": {"min_user_interactions": 5}}).kcore.min_user_interactions == 5
    assert BaselinesConfig.from_dict({"models": "ar2"}).models == ("ar2",)
    assert BaselinesConfig.from_dict(None).hybrid.alpha == 0.5
    assert SequenceConfig.from_dict({"stride": None}).window_stride == 200
    assert BaselinesConfig.from_dict({"models": None}).models == ("popularity", "genre", "markov", "ar2", "hybrid",
                                                                 "itemcf", "ease")
    assert BaselinesConfig.from_dict({"models": ["markov"]}).models == ("markov",)
    assert EvaluateConfig.from_dict({"ks": 10}).ks == [10]


def _model_section(name):
    from recsys_torch.models import MODELS, build_config

    sizes = {k: 9 for k in ("n_items", "n_users", "max_len") if k in MODELS[name][1].__dataclass_fields__}
    return lambda values: build_config(name, {**sizes, **values})


def _search_range(values):
    from jobs.tuning_study import search_space

    return search_space({"tune": {"m": {"a.b": {"type": "float", "low": 0.1, "high": 1.0, **values}}}}, "m")


def _drift_config(values):
    from recsys_spark.drift import DriftConfig

    return DriftConfig.from_dict(values)


def _nested(outer, name):
    return lambda values: outer.from_dict({name: values})


def _sections():
    from jobs.plan import PipelineConfig
    from recsys_spark.ensemble import EnsembleConfig
    from recsys_spark.publish import PublishConfig
    from recsys_spark.retention import RetentionConfig
    from recsys_torch.config import TrainConfig

    # section -> (its builder, a key of it, a value of the wrong type for that key)
    return {
        "als": (AlsConfig.from_dict, "seed", "x"),
        "etl": (EtlConfig.from_dict, "seed", 1.5),
        "etl.kcore": (_nested(EtlConfig, "kcore"), "max_iterations", "x"),
        "baselines": (BaselinesConfig.from_dict, "models", 5),
        **{f"baselines.{name}": (_nested(BaselinesConfig, name), key, "x") for name, key in (
            ("popularity", "recent_days"), ("genre", "top_genres"), ("markov", "top_k"), ("hybrid", "alpha"),
            ("itemcf", "shrinkage"), ("ease", "l2"))},
        "ensemble": (EnsembleConfig.from_dict, "models", 3),
        "evaluate": (EvaluateConfig.from_dict, "reference_model", 3),
        "drift": (_drift_config, "max_psi", "x"),
        "sequences": (SequenceConfig.from_dict, "last_gap", 3),
        "train": (TrainConfig.from_dict, "lr", "fast"),
        "pipeline": (PipelineConfig.from_dict, "k", "100"),
        "retention": (RetentionConfig.from_dict, "days", "7"),
        "publish": (PublishConfig.from_dict, "bootstrap_resamples", "x"),
        **{name: (_model_section(name), "dropout", "x") for name in ("ncf", "sasrec", "ss4rec")},
        "lightgcn": (_model_section("lightgcn"), "reg", "x"),
        "tune.m.a.b": (_search_range, "low", "x"),
    }


def test_every_section_a_step_reads_is_built_here():
    from jobs.plan import config_sections

    assert set(config_sections()) <= set(_sections())


@pytest.mark.parametrize("section", sorted(_sections()))
def test_an_unknown_key_and_a_wrong_type_are_named_in_every_section(section):
    builder, key, wrong = _sections()[section]
    with pytest.raises(ConfigError, match=rf"unknown config key\(s\) {section}\.bogus_key; known keys of {section}: "):
        builder({"bogus_key": 1})
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}(\[0\])? must be .*, got {wrong!r}$"):
        builder({key: wrong})


def test_a_rule_is_checked_on_construction_in_code_too():
    class_rules = [(lambda: AlsConfig(rank=0), "als.rank must be a positive integer, got 0"),
                   (lambda: EtlConfig(tie_break="time"), "etl.tie_break must be one of movieId, hash")]
    for make, message in class_rules:
        with pytest.raises(ConfigError, match=message):
            make()
    assert issubclass(AlsConfig, Config) and build(AlsConfig, {"rank": 3}, "als").rank == 3
