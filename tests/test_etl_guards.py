"""The ETL's input guard (recsys_spark.etl_guard) through `jobs/etl.py` on small generated data: over a good
warehouse a header-only ratings.csv is refused before the first commit (exit 2, the numbers, the setting to change,
every table's Delta version as it was, and the server still serving); a reasonable re-load and a deliberate override
go through."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datetime as dt

import deltalake
import pyarrow as pa
import pytest

from recsys_spark.etl_guard import LoadCounts, LoadRefused, refusals

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]
REPO = Path(__file__).resolve().parent.parent
TABLES = ("interactions", "items", "users", "tags", "rejects", "etl_report")


def versions(warehouse: Path) -> dict[str, int]:
    return {t: deltalake.DeltaTable(str(warehouse / t)).version() for t in TABLES}


def etl_cli(data: Path, warehouse: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "jobs/etl.py", "--data", str(data), "--warehouse", str(warehouse),
                           *overrides], cwd=REPO, capture_output=True, text=True, timeout=600)


def copy_data(source: Path, target: Path, keep_ratings=lambda i: True) -> Path:
    """The generated files, with the ratings rows whose index passes `keep_ratings` (the header always)."""
    target.mkdir(parents=True)
    for f in source.glob("*.csv"):
        lines = f.read_bytes().splitlines(keepends=True)
        if f.name == "ratings.csv":
            lines = lines[:1] + [line for i, line in enumerate(lines[1:]) if keep_ratings(i)]
        (target / f.name).write_bytes(b"".join(lines))
    return target


SERVED_DAY = dt.date(2030, 1, 2)


@pytest.fixture(scope="module")
def loaded(spark, tmp_path_factory):
    """Generated data and a warehouse holding its first load, plus a popularity list for every user (what
    `recsys serve` needs to start)."""
    from recsys_data.generate import generate
    from recsys_spark.delta import read_arrow
    from recsys_spark.etl import EtlConfig, run_etl
    from recsys_torch.tables import write_recommendations

    root = tmp_path_factory.mktemp("guards")
    generate(root / "data", n_users=50, n_items=120, n_ratings=2000, seed=3)
    run_etl(spark, root / "data", root / "warehouse", EtlConfig())
    users = read_arrow(root / "warehouse" / "users").column("userId").to_pylist()
    movies = sorted(read_arrow(root / "warehouse" / "interactions").column("movieId").unique().to_pylist())[:5]
    rows = [{"model": "popularity", "run_id": "r", "run_date": SERVED_DAY, "userId": u, "rank": i + 1,
             "movieId": m, "score": 5.0 - i} for u in users for i, m in enumerate(movies)]
    write_recommendations(root / "warehouse", pa.Table.from_pylist(rows), "popularity", SERVED_DAY)
    return root


def test_a_header_only_ratings_file_is_refused_and_nothing_changes(loaded, tmp_path):
    warehouse = loaded / "warehouse"
    data = copy_data(loaded / "data", tmp_path / "data", keep_ratings=lambda i: False)
    before = versions(warehouse)
    report = (warehouse / "etl_report.json").read_text()
    last = {t: deltalake.DeltaTable(str(warehouse / t)).get_add_actions(flatten=True).num_rows for t in TABLES}

    proc = etl_cli(data, warehouse)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("error: "))
    from recsys_spark.delta import read_arrow

    n_interactions = read_arrow(warehouse / "interactions").num_rows
    n_users = read_arrow(warehouse / "users").num_rows
    assert f"interactions {n_interactions:,} -> 0 (-100.0%)" in line and f"users {n_users:,} -> 0" in line
    assert "etl.max_shrink=0.2" in line and "etl.max_shrink=1.0" in line and "Nothing was written" in line
    assert versions(warehouse) == before
    assert (warehouse / "etl_report.json").read_text() == report
    assert {t: deltalake.DeltaTable(str(warehouse / t)).get_add_actions(flatten=True).num_rows
            for t in TABLES} == last
    # and the server still serves every user their list
    from fastapi.testclient import TestClient

    from recsys_serve.api import create_app

    user = read_arrow(warehouse / "users").column("userId")[0].as_py()
    with TestClient(create_app(warehouse, reload_interval=0)) as client:
        body = client.get(f"/users/{user}/recommendations", params={"model": "popularity", "k": 5}).json()
        assert body["run_date"] == SERVED_DAY.isoformat() and body["fallback"] is None and len(body["items"]) == 5
        assert client.get("/health").json()["users"] == n_users


def test_a_reasonable_reload_passes_and_replaces_the_tables(spark, loaded, tmp_path):
    """`recsys etl`'s own main in this process (on the tests' JVM; the refused load above is the one through a
    process of its own): exit 0, and every table one version on."""
    warehouse = tmp_path / "warehouse"
    import shutil

    from jobs.etl import main as etl

    shutil.copytree(loaded / "warehouse", warehouse)
    data = copy_data(loaded / "data", tmp_path / "data", keep_ratings=lambda i: i % 10 != 0)  # 10% fewer ratings
    before = versions(warehouse)
    settings = dict(spark.conf.getAll)
    try:
        assert etl(["--data", str(data), "--warehouse", str(warehouse)]) == 0
    finally:  # the job sets its runtime settings on the session: the later tests get the suite's back
        for key, value in dict(spark.conf.getAll).items():
            if not spark.conf.isModifiable(key) or value == settings.get(key):
                continue
            if key in settings:
                spark.conf.set(key, settings[key])
            else:
                spark.conf.unset(key)
    after = versions(warehouse)
    assert all(after[t] == before[t] + 1 for t in TABLES), (before, after)
    from recsys_spark.delta import read_arrow

    assert read_arrow(warehouse / "interactions").num_rows < read_arrow(loaded / "warehouse" / "interactions").num_rows


def test_a_deliberate_override_lets_a_shrunk_load_through(spark, loaded, tmp_path):
    import shutil

    from jobs.config import load_config, section
    from recsys_spark.delta import read_arrow
    from recsys_spark.etl import EtlConfig, run_etl

    warehouse = tmp_path / "warehouse"
    shutil.copytree(loaded / "warehouse", warehouse)
    data = copy_data(loaded / "data", tmp_path / "data", keep_ratings=lambda i: i % 2 == 0)  # half the ratings
    before = versions(warehouse)
    with pytest.raises(LoadRefused, match=r"interactions [\d,]+ -> [\d,]+ \(-[45]\d\.\d%\)"):
        run_etl(spark, data, warehouse, EtlConfig())
    assert versions(warehouse) == before
    cfg = load_config(["etl"], overrides=["etl.max_shrink=1.0"])
    run_etl(spark, data, warehouse, EtlConfig.from_dict(section(cfg, "etl")))
    assert read_arrow(warehouse / "interactions").num_rows == 1000


def test_a_load_rejecting_many_rows_is_refused_over_a_good_one(spark, loaded, tmp_path):
    import shutil

    from recsys_spark.etl import EtlConfig, run_etl

    warehouse = tmp_path / "warehouse"
    shutil.copytree(loaded / "warehouse", warehouse)
    data = copy_data(loaded / "data", tmp_path / "data")
    ratings = (data / "ratings.csv").read_bytes().splitlines(keepends=True)
    bad = [line.replace(b",", b";", 1) if 0 < i <= 200 else line for i, line in enumerate(ratings)]  # malformed
    (data / "ratings.csv").write_bytes(b"".join(bad))
    before = versions(warehouse)
    with pytest.raises(LoadRefused, match=r"ratings\.csv 10\.0% \(last load 0\.0%\).*etl\.max_reject_fraction=1\.0"):
        run_etl(spark, data, warehouse, EtlConfig())
    assert versions(warehouse) == before
    run_etl(spark, data, warehouse, EtlConfig(max_reject_fraction=1.0, max_shrink=1.0))
    assert versions(warehouse)["interactions"] == before["interactions"] + 1


def test_the_comparison_itself():
    last = LoadCounts(1000, 100, 50, 40, {"ratings.csv": 0.0})
    same = LoadCounts(1000, 100, 50, 40, {"ratings.csv": 0.01})
    assert refusals(same, last, 0.2, 0.05) == {}
    assert refusals(LoadCounts(0, 0, 0, 0, {"ratings.csv": 0.0}), None, 0.2, 0.05) == {}  # the first load
    fewer_users = LoadCounts(1000, 79, 50, 40, {"ratings.csv": 0.0})
    assert set(refusals(fewer_users, last, 0.2, 0.05)) == {"etl.max_shrink"}
    assert "users 100 -> 79 (-21.0%)" in refusals(fewer_users, last, 0.2, 0.05)["etl.max_shrink"]
    assert refusals(fewer_users, last, 0.25, 0.05) == {}
    rejecting = LoadCounts(1000, 100, 50, 40, {"movies.csv": 0.5})
    assert set(refusals(rejecting, last, 0.2, 0.05)) == {"etl.max_reject_fraction"}
    assert refusals(rejecting, last, 1.0, 1.0) == {}


@pytest.mark.parametrize("override", ["etl.max_shrink=1.5", "etl.max_reject_fraction=-0.1"])
def test_guard_settings_out_of_range_are_refused(override):
    from jobs.config import load_config, section
    from recsys_spark.errors import RecsysError
    from recsys_spark.etl import EtlConfig

    with pytest.raises(RecsysError, match=override.split("=")[0].replace(".", r"\.") + r" must be a number in \[0, 1\]"):
        EtlConfig.from_dict(section(load_config(["etl"], overrides=[override]), "etl"))
