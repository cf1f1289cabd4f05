"""The schema contract: docs/SCHEMAS.md, recsys_spark/schemas.py and recsys_torch/schemas.py say the same, and what
one side writes the other reads (on conftest's small_warehouse: the real ETL, ALS, baselines, sequence export,
SASRec training and inference)."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import recsys_core.schemas as core_schemas
import recsys_spark.schemas as spark_side
import recsys_torch.schemas as torch_side
from recsys_spark.delta import arrow_schema, table_path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "SCHEMAS.md"
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # petastorm 0.12 on pyarrow 14's legacy API

SPARK_NAMES = {pa.int64(): "long", pa.int32(): "int", pa.float64(): "double", pa.float32(): "float",
               pa.string(): "string", pa.date32(): "date", pa.bool_(): "boolean",
               pa.timestamp("us", tz="UTC"): "timestamp"}


def spark_type(t: pa.DataType) -> str:
    """A Delta table column's type as the document writes it (Spark SQL names)."""
    if pa.types.is_list(t):
        return f"array<{spark_type(t.value_type)}>"
    if pa.types.is_map(t):
        return f"map<{spark_type(t.key_type)},{spark_type(t.item_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{spark_type(f.type)}" for f in t) + ">"
    return SPARK_NAMES[t]


def arrow_type(t: pa.DataType) -> str:
    """A shard column's type as the document writes it (Arrow names)."""
    return f"list<{arrow_type(t.value_type)}>" if pa.types.is_list(t) else str(t)


def columns(schema: pa.Schema, type_name=spark_type) -> list[tuple[str, str]]:
    """Names and types, without nullability or list item names (which differ between writers, not in meaning)."""
    return [(field.name, type_name(field.type)) for field in schema]


def documented() -> dict[str, list[tuple[str, str]]]:
    """Every table of docs/SCHEMAS.md by the names in its `###` heading: [(column, type)], in the document's order."""
    tables: dict[str, list[tuple[str, str]]] = {}
    names: list[str] = []
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            names = [n.rstrip("/") for n in re.findall(r"`([^`]+)`", line)] if line.startswith("### ") else []
        elif names and line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if cells[0] != "column" and set(cells[0]) != {"-"}:
                for name in names:
                    kind = re.split(r",(?![^<]*>)", cells[1])[0].strip()  # not a comma inside map<…,…>
                    tables.setdefault(name, []).append((cells[0], kind))
    return tables


def delta_schema(warehouse: Path, name: str) -> pa.Schema:
    """The schema in a Delta table's log: what its writer committed."""
    import deltalake

    return arrow_schema(deltalake.DeltaTable(table_path(warehouse, name)))


def documented_meta_keys() -> list[str]:
    block = DOC.read_text().split("### `meta.json`", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return [key for key in re.findall(r'"(\w+)":', block) if key not in ("train", "validation", "test", "ncf_train", "edges")]


def test_the_document_and_the_spark_side_declare_the_same_tables_and_shards():
    doc = documented()
    assert set(spark_side.TABLES) == set(core_schemas.TABLES)
    assert set(doc) == set(spark_side.TABLES) | set(spark_side.SHARDS)
    for name, schema in spark_side.TABLES.items():
        assert doc[name] == columns(schema), name
    for name, schema in spark_side.SHARDS.items():
        assert doc[name] == columns(schema, arrow_type), name
    assert documented_meta_keys() == list(spark_side.META_KEYS)


def test_the_torch_side_declares_what_the_document_says():
    doc = documented()
    assert doc["recommendations"] == columns(torch_side.RECOMMENDATIONS)
    assert doc["item_embeddings"] == columns(torch_side.ITEM_EMBEDDINGS)
    for name, schema in {"train": torch_side.SEQUENCE_ROWS, "ncf_train": torch_side.NCF_ROWS,
                         "edges": torch_side.EDGE_ROWS, "item_map.parquet": torch_side.ITEM_MAP, "user_map.parquet": torch_side.USER_MAP}.items():
        assert doc[name] == columns(schema, arrow_type), name
    assert set(torch_side.META_REQUIRED_KEYS) <= set(documented_meta_keys())
    version = re.search(r'"schema_version": (\d+)', DOC.read_text().split("### `meta.json`", 1)[1])
    assert version and int(version.group(1)) == torch_side.SHARD_SCHEMA_VERSION == spark_side.SHARD_SCHEMA_VERSION
    from recsys_torch.shards import EVAL_COLUMNS, PAIR_COLUMNS, SEQUENCE_COLUMNS

    assert set(SEQUENCE_COLUMNS) | set(EVAL_COLUMNS) <= set(torch_side.SEQUENCE_ROWS.names)
    assert set(PAIR_COLUMNS) <= set(torch_side.EDGE_ROWS.names)
    assert set(PAIR_COLUMNS) <= set(torch_side.NCF_ROWS.names)  # a pair model trains from either shard


@pytest.fixture(scope="module")
def spark_written(spark, small_warehouse, tmp_path_factory) -> Path:
    """A copy of small_warehouse with every table Spark writes: the lists of ar2 and itemcf (run "contract"), the
    transitions, neighbours, a metric and a drift row."""
    import shutil

    from recsys_spark.baselines import topn
    from recsys_spark.drift import row as drift_row
    from recsys_spark.drift import write_drift
    from recsys_spark.evaluate import metric_row, write_metrics

    warehouse = Path(shutil.copytree(small_warehouse, tmp_path_factory.mktemp("contract") / "wh", symlinks=True))
    day = dt.date(2030, 1, 1)
    topn(spark, warehouse, "ar2", 3, day, "contract")  # recommendations(_validation), transitions_ar1, _ar2
    topn(spark, warehouse, "itemcf", 3, day, "contract")  # item_neighbors
    write_metrics([metric_row("ar2", "contract", day, "test", "hr", 3, 0.5)], warehouse)
    write_drift([drift_row(day, "input", "interactions", 1.0)], warehouse, day)
    return warehouse


def test_spark_writes_every_table_as_declared(spark_written):
    for name, schema in spark_side.TABLES.items():
        if name not in spark_side.WRITTEN_BY_TORCH and name not in spark_side.WRITTEN_BY_PUBLISH:  # test_publish.py
            assert columns(delta_schema(spark_written, name)) == columns(schema), name


def test_torch_reads_the_shards_and_table_spark_wrote(spark_written):
    small_warehouse = spark_written
    from recsys_torch.data import ShardSpec, make_loader
    from recsys_torch.shards import read_id_map
    from recsys_torch.shards import EVAL_COLUMNS, read_meta
    from recsys_torch.tables import read_recommendations

    seq_dir = small_warehouse / "sequences"
    meta = read_meta(seq_dir)
    assert list(meta) == list(spark_side.META_KEYS)
    pairs = {"ncf_train": torch_side.NCF_ROWS, "edges": torch_side.EDGE_ROWS}
    for name in ("train", "validation", "test", "ncf_train", "edges"):
        declared = pairs.get(name, torch_side.SEQUENCE_ROWS)
        files = sorted((seq_dir / name).glob("*.parquet"))
        assert files, f"{seq_dir / name} holds no Parquet file"
        for path in files:
            assert columns(pq.read_schema(path), arrow_type) == columns(declared, arrow_type), path
    for name, declared in (("item_map", torch_side.ITEM_MAP), ("user_map", torch_side.USER_MAP)):
        assert columns(pq.read_schema(seq_dir / f"{name}.parquet"), arrow_type) == columns(declared, arrow_type)
    assert (read_id_map(seq_dir, "user_map", "user_idx", "userId") >= 0).sum() == meta["n_users"]
    dataset, loader = make_loader(ShardSpec(seq_dir / "test", EVAL_COLUMNS, batch_size=16, shuffle=False))
    assert sum(len(batch["user_idx"]) for batch in loader) == meta["rows"]["test"]
    dataset.close()
    from recsys_torch.graph import graph_edges

    users, items = graph_edges(seq_dir, meta, "validation")  # Spark's edges pass the torch side's range checks
    assert len(users) == meta["rows"]["edges"] == meta["rows"]["ncf_train"]

    recs = read_recommendations(small_warehouse)
    assert columns(recs.schema) == columns(torch_side.RECOMMENDATIONS)
    assert len(recs.filter(pc.equal(recs["run_id"], "contract"))) > 0  # the rows Spark wrote (ar2)


def test_spark_reads_the_partition_torch_wrote(spark, small_warehouse_copy):
    small_warehouse = small_warehouse_copy
    from pyspark.sql import functions as F

    from recsys_spark.recommendations import read_recommendations
    from recsys_torch.infer import topn

    day = dt.date(2030, 1, 2)
    stats = topn(small_warehouse, "sasrec", k=3, run_date=day, run_id="torch-contract", device="cpu")
    assert columns(delta_schema(small_warehouse, "recommendations")) == columns(spark_side.RECOMMENDATIONS)
    rows = read_recommendations(spark, small_warehouse, "sasrec").where(F.col("run_date") == F.lit(day))
    assert rows.count() == stats["rows"] == 3 * json.loads((small_warehouse / "sequences" / "meta.json")
                                                           .read_text())["rows"]["test"]
    from pyspark.sql.pandas.types import from_arrow_type

    assert {f.name: f.dataType.simpleString() for f in rows.schema.fields} == {
        f.name: from_arrow_type(f.type).simpleString() for f in spark_side.RECOMMENDATIONS}

    # The item vectors written beside the list: every movie of item_map, SASRec's item_emb rows 1..n.
    from recsys_spark.delta import read_table
    from recsys_torch.checkpoint import load

    assert columns(delta_schema(small_warehouse, "item_embeddings")) == columns(spark_side.ITEM_EMBEDDINGS)
    vectors = read_table(spark, table_path(small_warehouse, "item_embeddings")).where(F.col("run_date") == F.lit(day))
    item_map = pq.read_table(small_warehouse / "sequences" / "item_map.parquet").to_pydict()
    weight = load(small_warehouse / "models" / "sasrec" / "best.pt")["model"]["item_emb.weight"]
    by_movie = {r.movieId: r.vector for r in vectors.where(F.col("model") == "sasrec").collect()}
    assert set(by_movie) == set(item_map["movieId"])
    for item_idx, movie_id in zip(item_map["item_idx"], item_map["movieId"]):
        assert by_movie[movie_id] == pytest.approx(weight[item_idx].tolist(), abs=1e-6)
