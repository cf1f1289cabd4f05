"""recsys_spark.config.from_mapping: every config section a user can get wrong is one clear RecsysError."""
import pytest

from recsys_spark.als import AlsConfig
from recsys_spark.baselines import BaselinesConfig
from recsys_spark.errors import RecsysError
from recsys_spark.etl import EtlConfig
from recsys_spark.evaluate import EvaluateConfig
from recsys_spark.sequences import SequenceConfig


@pytest.mark.parametrize("cls, values, message", [
    (AlsConfig, {"name": 5}, "als.name must be str, got 5"),
    (AlsConfig, {"rank": 2.5}, "als.rank must be int, got 2.5"),
    (AlsConfig, {"rank": True}, "als.rank must be int, got True"),
    (AlsConfig, {"implicit_prefs": "abc"}, "als.implicit_prefs must be bool"),
    (AlsConfig, {"num_blocks": "abc"}, "als.num_blocks must be int | None"),
    (AlsConfig, [1], "als must be a mapping"),
    (AlsConfig, {"grid": [1]}, "als.grid must be a mapping"),
    (EtlConfig, {"kcore": 5}, "etl.kcore must be a mapping"),
    (EtlConfig, {"kcore": {"min_user_interactions": "x"}}, "etl.kcore.min_user_interactions must be int"),
    (EtlConfig, {"kcore": {"min_user_interactions": -1}}, "etl.kcore.min_user_interactions must be an integer >= 0"),
    (EtlConfig, {"kcore": {"bogus": 1}}, r"etl.kcore config: unknown keys \['bogus'\]"),
    (EtlConfig, {"tie_break": "time"}, "etl.tie_break must be one of movieId, hash"),
    (SequenceConfig, {"max_len": "a"}, "sequences.max_len must be int"),
    (SequenceConfig, {"stride": 0}, "sequences.stride must be a positive integer"),
    (BaselinesConfig, {"models": 5}, "baselines.models must be a list of str, got 5"),
    (BaselinesConfig, {"models": ["popularity", 3]}, r"baselines.models\[1\] must be str, got 3"),
    (BaselinesConfig, {"models": ["popularity", "als"]}, "must be a non-empty subset of"),
    (BaselinesConfig, {"genre": {"top_genres": "x"}}, "baselines.genre.top_genres must be int"),
    (BaselinesConfig, {"genre": {"top_genres": 0}}, "baselines.genre.top_genres must be a positive integer"),
    (BaselinesConfig, {"hybrid": {"alpha": True}}, "baselines.hybrid.alpha must be float, got True"),
    (BaselinesConfig, {"markov": [1]}, "baselines.markov must be a mapping"),
    (BaselinesConfig, {"bogus": 1}, r"baselines config: unknown keys \['bogus'\]"),
    (EvaluateConfig, {"ks": ["a"]}, r"evaluate.ks\[0\] must be int"),
])
def test_wrong_values_name_their_section_and_key(cls, values, message):
    with pytest.raises(RecsysError, match=message):
        cls.from_dict(values)


def test_right_values_still_build():
    assert AlsConfig.from_dict({"reg_param": 1, "num_blocks": None, "checkpoint_dir": None}).reg_param == 1
    assert EtlConfig.from_dict({"kcore": None}).kcore.enabled is False
    assert EtlConfig.from_dict({"kcore": {"min_user_interactions": 5}}).kcore.min_user_interactions == 5
    assert BaselinesConfig.from_dict({"models": "ar2"}).models == ("ar2",)
    assert BaselinesConfig.from_dict(None).hybrid.alpha == 0.5
    assert SequenceConfig.from_dict({"stride": None}).window_stride == 200
    assert BaselinesConfig.from_dict({"models": None}).models == ("popularity", "genre", "markov", "ar2", "hybrid",
                                                                 "itemcf")
    assert BaselinesConfig.from_dict({"models": ["markov"]}).models == ("markov",)
    assert EvaluateConfig.from_dict({"ks": 10}).ks == [10]
