import datetime as dt

import pytest

from recsys_spark.errors import RecsysError
from recsys_spark.pipeline import State, fingerprint, plan

DAY = dt.date(2026, 11, 23)


def make_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n")
    (data / "movies.csv").write_text("movieId,title,genres\n1,A (1999),Drama\n")
    return data


def fingerprints(steps, cfg, day):
    done = {}
    for step in steps:
        done[step.name] = fingerprint(step, cfg, day, done)
    return done


def test_plan_covers_every_model_and_ends_with_evaluation(tmp_path):
    steps = plan(make_data(tmp_path), tmp_path / "wh", {}, tmp_path / "c.yaml", DAY)
    names = [s.name for s in steps]
    assert names[0] == "etl" and names[-1] == "evaluate"
    for name in ["als", "topn-als", "als_implicit", "topn-als_implicit", "baselines", "export-sequences", "train-sasrec", "topn-ss4rec", "topn-ncf"]:
        assert name in names
    evaluate = steps[-1]
    assert set(evaluate.depends) == {n for n in names if n.startswith("topn-")} | {"baselines"}


def test_models_can_be_chosen(tmp_path):
    cfg = {"pipeline": {"spark_models": ["popularity"], "torch_models": ["sasrec"]}}
    names = [s.name for s in plan(make_data(tmp_path), tmp_path / "wh", cfg, tmp_path / "c.yaml", DAY)]
    assert "als" not in names and "train-ncf" not in names and "train-sasrec" in names


@pytest.mark.parametrize("pipeline, message", [
    ({"torch_models": ["sasrec", "ss4recc"]}, "pipeline.torch_models must be a list drawn from"),
    ({"spark_models": "als"}, "pipeline.spark_models must be a list drawn from"),
    ({"k": "100"}, "pipeline.k must be a positive integer"),
    ({"k": 0}, "pipeline.k must be a positive integer"),
])
def test_pipeline_section_mistakes_are_errors_not_silent_skips(tmp_path, pipeline, message):
    with pytest.raises(RecsysError, match=message):
        plan(make_data(tmp_path), tmp_path / "wh", {"pipeline": pipeline}, tmp_path / "c.yaml", DAY)


def test_pipeline_job_refuses_a_typo_before_creating_anything(tmp_path, capsys):
    from jobs.pipeline import main

    data, warehouse = make_data(tmp_path), tmp_path / "wh"
    assert main(["--data", str(data), "--warehouse", str(warehouse), "pipeline.torch_models=[sasrecc]"]) == 2
    assert "pipeline.torch_models" in capsys.readouterr().err and not warehouse.exists()
    (data / "movies.csv").write_text("movieId,name\n1,A\n")
    assert main(["--data", str(data), "--warehouse", str(warehouse)]) == 2
    assert "movies.csv" in capsys.readouterr().err and not warehouse.exists()


def test_fingerprints_follow_inputs_config_and_run_date(tmp_path):
    data = make_data(tmp_path)
    steps = plan(data, tmp_path / "wh", {}, tmp_path / "c.yaml", DAY)
    base = fingerprints(steps, {}, DAY)
    assert base == fingerprints(steps, {}, DAY)

    other_day = fingerprints(steps, {}, dt.date(2026, 11, 24))
    assert other_day["etl"] == base["etl"] and other_day["train-sasrec"] == base["train-sasrec"]
    assert other_day["topn-sasrec"] != base["topn-sasrec"] and other_day["evaluate"] != base["evaluate"]

    tuned = fingerprints(steps, {"als": {"rank": 50}}, DAY)
    assert tuned["als"] != base["als"] and tuned["topn-als"] != base["topn-als"]
    assert tuned["train-sasrec"] == base["train-sasrec"]

    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,5.0,1\n")
    changed = fingerprints(plan(data, tmp_path / "wh", {}, tmp_path / "c.yaml", DAY), {}, DAY)
    assert all(changed[name] != base[name] for name in base)


def test_state_remembers_only_successes(tmp_path):
    state = State(tmp_path)
    state.record("etl", "abc", "ok")
    state.record("als", "def", "failed")
    again = State(tmp_path)
    assert again.succeeded_with("etl") == "abc"
    assert again.succeeded_with("als") is None
