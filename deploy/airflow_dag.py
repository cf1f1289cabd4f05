"""Airflow DAG example for the nightly run (Airflow is not a dependency of the project or its tests).

One task per step, each the same command a user runs by hand, so a failed task is cleared and re-run alone.
"""
from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.operators.bash import BashOperator

REPO = "/opt/recsys"
DATA = "/data/ml-25m"
WAREHOUSE = "/data/warehouse"
SUBMIT = "spark-submit --master yarn --conf spark.sql.session.timeZone=UTC"
COMMON = f"--warehouse {WAREHOUSE} --env cluster --config conf/cluster.yaml"
RUN_DATE = "--run-date {{ ds }}"

with DAG(
    dag_id="recsys_nightly",
    start_date=dt.datetime(2026, 1, 1),
    schedule="15 2 * * *",
    catchup=False,
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=10), "cwd": REPO},
) as dag:
    etl = BashOperator(task_id="etl", bash_command=f"{SUBMIT} jobs/etl.py --data {DATA} {COMMON}")
    als = BashOperator(task_id="als", bash_command=f"{SUBMIT} jobs/fit_als.py {COMMON}")
    topn_als = BashOperator(task_id="topn_als", bash_command=f"{SUBMIT} jobs/topn.py --model als {RUN_DATE} {COMMON}")
    baselines = BashOperator(task_id="baselines", bash_command=f"{SUBMIT} jobs/baselines.py {RUN_DATE} {COMMON}")
    export = BashOperator(task_id="export_sequences", bash_command=f"{SUBMIT} jobs/export_sequences.py {COMMON}")
    evaluate = BashOperator(task_id="evaluate", bash_command=f"{SUBMIT} jobs/evaluate.py {RUN_DATE} {COMMON}")
    etl >> [als, baselines, export]
    als >> topn_als >> evaluate
    baselines >> evaluate
    for model in ("ncf", "sasrec", "ss4rec"):
        train = BashOperator(task_id=f"train_{model}", queue="gpu",
                             bash_command=f"torchrun --standalone --nproc_per_node=8 jobs/train.py --model {model} {COMMON}")
        topn = BashOperator(task_id=f"topn_{model}", queue="gpu",
                            bash_command=f"python jobs/topn.py --model {model} {RUN_DATE} {COMMON}")
        export >> train >> topn >> evaluate
