import subprocess
import sys
from pathlib import Path

import pytest

from jobs.config import CONF_DIR, ConfigError, apply_override, load_config, merge

REPO = Path(__file__).resolve().parent.parent


def test_layers_and_typed_overrides(tmp_path):
    (tmp_path / "local.yaml").write_text("spark:\n  x: 1\nals:\n  rank: 10\n  reg: 0.1\n")
    (tmp_path / "als.yaml").write_text("als:\n  rank: 12\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("als:\n  maxIter: 5\n")
    cfg = load_config(["als"], config_file=extra,
                      overrides=["als.rank=20", "als.alpha=0.5", "als.implicit=true", "etl.kcore=null"],
                      conf_dir=tmp_path)
    assert cfg["als"] == {"rank": 20, "reg": 0.1, "maxIter": 5, "alpha": 0.5, "implicit": True}
    assert cfg["spark"] == {"x": 1}
    assert cfg["etl"]["kcore"] is None


def test_environment_overrides_section_defaults(tmp_path):
    (tmp_path / "train.yaml").write_text("train:\n  epochs: 20\n  lr: 0.001\n")
    (tmp_path / "cluster.yaml").write_text("train:\n  epochs: 50\n")
    cfg = load_config(["train"], env="cluster", conf_dir=tmp_path)
    assert cfg["train"] == {"epochs": 50, "lr": 0.001}
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(["train"], env="nope", conf_dir=tmp_path)


def test_a_missing_component_file_is_an_error_not_a_silent_default(tmp_path):
    (tmp_path / "local.yaml").write_text("spark: {}\n")
    with pytest.raises(ConfigError, match=r"config file not found: .*absent.yaml \(the defaults of section 'absent'\)"):
        load_config(["absent"], conf_dir=tmp_path)
    with pytest.raises(ConfigError, match="environment config not found"):
        load_config([], conf_dir=tmp_path / "nowhere")


def test_merge_does_not_mutate():
    base = {"a": {"b": 1}}
    out = merge(base, {"a": {"c": 2}})
    assert base == {"a": {"b": 1}} and out == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize("bad", ["noequals", ".x=1", "a..b=2"])
def test_bad_override_is_named(bad):
    with pytest.raises(ConfigError, match="override"):
        apply_override({}, bad)


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError, match="is a value"):
        apply_override({"a": 1}, "a.b=2")


def test_bad_yaml_names_the_file(tmp_path):
    (tmp_path / "local.yaml").write_text("spark: {}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(config_file=bad, conf_dir=tmp_path)


def test_shipped_configs_parse():
    assert CONF_DIR.resolve() == (REPO / "conf").resolve()  # jobs/conf is the repository's conf/
    for path in (REPO / "conf").glob("*.yaml"):
        load_config(config_file=path, conf_dir=REPO / "conf")


def test_cli_lists_commands_and_refuses_unknown():
    ok = subprocess.run([sys.executable, "-m", "jobs.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0 and "etl" in ok.stdout and "pipeline" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "jobs.cli", "nope"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "unknown command 'nope'" in bad.stderr


def test_overrides_may_come_before_and_after_options():
    """`bash scripts/demo.sh --run-date D key=value` puts overrides on both sides of an option."""
    from jobs import pipeline

    args = pipeline.parse(["--data", "d", "--warehouse", "w", "train.max_steps=600", "--run-date", "2026-11-30",
                           "train.threads=1"])
    assert args.run_date == "2026-11-30" and args.overrides == ["train.max_steps=600", "train.threads=1"]


def test_every_job_with_overrides_parses_them_on_both_sides_of_an_option():
    """A parser with the `key=value` positional must use parse_intermixed_args; plain parse_args stops collecting
    overrides at the first option, so `recsys X --warehouse W a=1 --run-date D b=2` fails."""
    import ast

    jobs_dir = Path(__file__).resolve().parent.parent / "jobs"
    checked = []
    for path in sorted(jobs_dir.glob("*.py")):
        tree = ast.parse(path.read_text())
        calls = [node.func.attr for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]
        if "add_config_flags" not in {getattr(n.func, "id", None) for n in ast.walk(tree) if isinstance(n, ast.Call)}:
            continue
        checked.append(path.name)
        assert "parse_args" not in calls, f"{path.name} parses with parse_args: use parse_intermixed_args"
        assert "parse_intermixed_args" in calls, path.name
    assert {"ensemble.py", "tune.py", "topn.py", "train.py", "pipeline.py"} <= set(checked)
