"""recsys_core.storage: warehouse locations as paths or URIs, and the Delta tables on a real S3 API (moto's server on
loopback, started here; the S3 tests are skipped when moto[server] is not installed)."""
import datetime as dt
import socket

import pyarrow as pa
import pytest

from recsys_core import storage


@pytest.mark.parametrize("location, table, spark, native", [
    ("/data/wh/", "/data/wh/items", "/data/wh", "/data/wh"),
    ("file:///tmp/x/wh", "file:///tmp/x/wh/items", "file:///tmp/x/wh", "/tmp/x/wh"),
    ("file:/tmp/x/wh/", "file:///tmp/x/wh/items", "file:/tmp/x/wh/", "/tmp/x/wh"),
    ("s3://bucket/wh/", "s3://bucket/wh/items", "s3a://bucket/wh/", "s3://bucket/wh"),
    ("s3a://bucket/wh", "s3a://bucket/wh/items", "s3a://bucket/wh", "s3://bucket/wh"),
    ("hdfs://nn:8020/wh", "hdfs://nn:8020/wh/items", "hdfs://nn:8020/wh", "hdfs://nn:8020/wh"),
])
def test_a_location_keeps_its_scheme(location, table, spark, native):
    assert storage.join(location, "items") == table
    assert storage.parent(table) == storage.normalize(location)
    assert storage.basename(table) == "items"
    assert storage.spark_path(location) == spark
    assert storage.native_path(location) == native


def test_a_relative_path_stays_relative_for_python_and_absolute_for_spark(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.join("wh", "items") == "wh/items"
    assert storage.spark_path("wh") == str(tmp_path / "wh")
    assert storage.native_path("wh/items") == str(tmp_path / "wh" / "items")
    assert storage.is_local("wh") and storage.is_local("file:///x") and not storage.is_local("s3://b/x")


def test_storage_options_only_for_s3_and_from_the_environment(monkeypatch):
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_S3_LOCKING_PROVIDER", "AWS_CONDITIONAL_PUT", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert storage.storage_options("/data/wh") is None
    assert storage.storage_options("file:///data/wh") is None
    assert storage.storage_options("s3://b/wh") == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret", "AWS_ALLOW_HTTP": "true", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    monkeypatch.setenv("AWS_S3_LOCKING_PROVIDER", "dynamodb")  # a configured commit protocol replaces the default
    options = storage.storage_options("s3://b/wh")
    assert options["AWS_S3_LOCKING_PROVIDER"] == "dynamodb" and "AWS_S3_ALLOW_UNSAFE_RENAME" not in options


def test_local_listing_and_removal_through_pyarrow(tmp_path):
    root = f"file://{tmp_path}"
    (tmp_path / "t" / "_delta_log").mkdir(parents=True)
    (tmp_path / "t" / "_delta_log" / "0.json").write_text("{}")
    (tmp_path / "f.json").write_text("{}")
    assert storage.listdir(root) == ["f.json", "t"]
    assert storage.is_dir(storage.join(root, "t", "_delta_log")) and not storage.is_dir(storage.join(root, "f.json"))
    assert storage.listdir(storage.join(root, "missing")) == []
    storage.remove(storage.join(root, "t"))
    storage.remove(storage.join(root, "f.json"))
    storage.remove(storage.join(root, "missing"))
    assert storage.listdir(root) == []


def test_write_bytes_makes_its_folders_replaces_whole_and_reads_back(tmp_path):
    target = storage.join(f"file://{tmp_path}", "models", "itemcf", "config.json")
    storage.write_bytes(target, b'{"history": 5}')
    storage.write_bytes(target, b'{"history": 6}')  # replaced, not appended
    assert storage.read_bytes(target) == b'{"history": 6}'
    assert sorted(p.name for p in (tmp_path / "models" / "itemcf").iterdir()) == ["config.json"]  # no temp left


# --- a real S3 API: moto's server on loopback ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_server():
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed (the S3 API tests)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_warehouse(s3_server, monkeypatch, request):
    """An empty bucket on the moto server, the AWS_* variables pointing at it; the warehouse URI."""
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_S3_LOCKING_PROVIDER",
                "AWS_CONDITIONAL_PUT"):
        monkeypatch.delenv(key, raising=False)
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import boto3

    bucket = request.node.name.replace("_", "-").lower()[:40].strip("-")
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/warehouse"


def test_s3_listing_and_removal(s3_warehouse):
    import boto3

    bucket = s3_warehouse.split("/")[2]
    client = boto3.client("s3", endpoint_url=storage._s3_endpoint(), region_name="us-east-1")
    client.put_object(Bucket=bucket, Key="warehouse/t/_delta_log/00000000000000000000.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="warehouse/report.json", Body=b"{}")
    assert storage.listdir(s3_warehouse) == ["report.json", "t"]
    assert storage.is_dir(storage.join(s3_warehouse, "t", "_delta_log"))
    assert not storage.exists(storage.join(s3_warehouse, "missing"))
    storage.remove(storage.join(s3_warehouse, "t"))
    assert storage.listdir(s3_warehouse) == ["report.json"]
    written = storage.join(s3_warehouse, "models", "itemcf", "config.json")
    storage.write_bytes(written, b"{}")
    assert storage.read_bytes(written) == b"{}" and storage.listdir(s3_warehouse) == ["models", "report.json"]


def _lists(model: str, day: dt.date, movies: list[int]) -> pa.Table:
    from recsys_torch.schemas import RECOMMENDATIONS

    n = len(movies)
    return pa.table({"model": [model] * n, "run_id": ["r1"] * n, "run_date": [day] * n, "userId": [1] * n,
                     "rank": list(range(1, n + 1)), "movieId": movies,
                     "score": [1.0 / r for r in range(1, n + 1)]}).select(RECOMMENDATIONS.names).cast(RECOMMENDATIONS)


def test_partition_replaces_on_s3_keep_every_models_lists(s3_warehouse):
    # On object storage a table used to look missing (a local is_dir), so each model's write replaced the whole
    # table: two models' lists must both survive, and a re-run replaces only its own partition.
    from recsys_spark.delta import read_arrow, table_exists, table_path, table_version, write_arrow

    path = table_path(s3_warehouse, "recommendations")
    day = dt.date(2026, 11, 23)
    for model, movies in (("als", [10, 11]), ("sasrec", [20, 21, 22]), ("als", [12])):
        write_arrow(_lists(model, day, movies), path, partition_by=["model", "run_date"],
                    replace={"model": model, "run_date": day})
    assert table_exists(path) and table_version(path) == 2
    back = read_arrow(path).to_pylist()
    assert sorted((r["model"], r["movieId"]) for r in back) == [("als", 12), ("sasrec", 20), ("sasrec", 21),
                                                                ("sasrec", 22)]
    assert storage.listdir(s3_warehouse) == ["recommendations"]  # nothing written beside the table


def test_torch_writer_replaces_partitions_on_s3(s3_warehouse):
    from recsys_torch.tables import read_recommendations, write_recommendations

    day = dt.date(2026, 11, 23)
    write_recommendations(s3_warehouse, _lists("sasrec", day, [20, 21]), "sasrec", day)
    write_recommendations(s3_warehouse, _lists("gru4rec", day, [30]), "gru4rec", day)
    assert write_recommendations(s3_warehouse, _lists("sasrec", day, [22]), "sasrec", day) == 2
    back = read_recommendations(s3_warehouse).to_pylist()
    assert sorted((r["model"], r["movieId"]) for r in back) == [("gru4rec", 30), ("sasrec", 22)]
