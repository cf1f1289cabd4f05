"""What ships to the executors (`recsys ship`) and how the environment picks the launchers (jobs/launchers.py)."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jobs import launchers, ship
from jobs.cli import main as recsys
from recsys_core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_recsys_ship_builds_the_same_zip_of_the_executors_packages(tmp_path, capsys):
    assert recsys(["ship", "--out", str(tmp_path / "a")]) == 0
    assert "pass it to spark-submit --py-files" in capsys.readouterr().out
    first = ship.archive_path(tmp_path / "a")
    second = ship.build(tmp_path / "b")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()  # sources only, no timestamps
    names = zipfile.ZipFile(first).namelist()
    assert "recsys_spark/baselines/itemcf.py" in names and "recsys_core/storage.py" in names
    assert {name.split("/")[0] for name in names} == set(ship.SHIPPED_PACKAGES)  # no jobs/, no torch package
    assert not any("__pycache__" in name for name in names)
    # What an executor does with --py-files: the zip on sys.path, the packages imported from it.
    code = (f"import sys; sys.path.insert(0, {str(first)!r}); import recsys_spark.baselines.itemcf as m, "
            f"recsys_core.storage as s; print(m.__file__); print(s.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith(str(first) + "/") for line in out.stdout.split())


def test_the_environment_file_picks_the_launcher():
    from jobs.config import load_config

    assert launchers.launcher_of(load_config([], env="local")) == "local"
    assert launchers.launcher_of(load_config([], env="cluster")) == "cluster"
    with pytest.raises(ConfigError, match="launcher must be one of local, cluster, got 'yarn'"):
        launchers.launcher_of({"launcher": "yarn"})


def test_empty_spark_settings_are_left_off_and_bools_are_sparks():
    settings = launchers.spark_settings({"spark": {"spark.jars.packages": None, "spark.sql.extensions": "",
                                                   "spark.ui.enabled": False, "spark.executor.cores": 1,
                                                   "spark.sql.session.timeZone": None}})
    assert settings == {"spark.ui.enabled": "false", "spark.executor.cores": "1"}
