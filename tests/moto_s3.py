"""A local warehouse copied onto moto's S3 server (conftest's `s3_env`), for the tests that read a warehouse on S3."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# settings of a developer's own AWS setup that would send the tests elsewhere or change how delta-rs commits
S3_ENV_CLEARED = ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION",
                  "AWS_S3_LOCKING_PROVIDER", "AWS_CONDITIONAL_PUT")


@contextmanager
def s3_settings(s3_env: dict):
    """The process environment pointing at the moto server, for the duration of the block."""
    with pytest.MonkeyPatch.context() as patch:
        for key in S3_ENV_CLEARED:
            patch.delenv(key, raising=False)
        for key, value in s3_env.items():
            patch.setenv(key, value)
        yield


def subprocess_env(s3_env: dict) -> dict:
    """os.environ for a subprocess that reads the moto server."""
    env = {k: v for k, v in os.environ.items() if k not in S3_ENV_CLEARED}
    return {**env, **s3_env}


def upload(s3_env: dict, local: Path, bucket: str) -> str:
    """A new bucket on the moto server holding a copy of the local warehouse `local` under `warehouse/`; its URI."""
    import boto3
    from pyarrow import fs

    boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name=s3_env["AWS_REGION"],
                 aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
    # background_writes off: with them, pyarrow 14's copy_files of a few hundred files waits forever on its own
    # I/O thread pool (measured here: 300 files never finished; without them, 4 s)
    endpoint = urlsplit(s3_env["AWS_ENDPOINT_URL"])
    s3 = fs.S3FileSystem(access_key=s3_env["AWS_ACCESS_KEY_ID"], secret_key=s3_env["AWS_SECRET_ACCESS_KEY"],
                         region=s3_env["AWS_REGION"], endpoint_override=endpoint.netloc, scheme=endpoint.scheme,
                         background_writes=False)
    fs.copy_files(str(local), f"{bucket}/warehouse", source_filesystem=fs.LocalFileSystem(), destination_filesystem=s3)
    return f"s3://{bucket}/warehouse"
