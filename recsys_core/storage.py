"""Where the warehouse lives: a local path, `file:///path`, `s3://bucket/prefix`, `hdfs://…`, one string everywhere.

A location is never put through `pathlib.Path` (it turns `s3://b/wh` into `s3:/b/wh` and `file:///x` into a relative
folder named `file:`). This module joins locations, lists and removes through pyarrow.fs, gives delta-rs its
`storage_options` and Spark its form of the URI. S3 settings come from the environment, as the AWS tools read them:
AWS_ENDPOINT_URL (an S3-compatible store such as MinIO), AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.

pyarrow is imported inside the functions: recsys_core loads neither Spark, torch nor pyarrow on import.
"""
from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

LOCAL_SCHEMES = ("", "file")
S3_SCHEMES = ("s3", "s3a", "s3n")
# delta-rs needs a commit protocol on S3; these pass through from the environment when set
DELTA_S3_COMMIT_KEYS = ("AWS_S3_LOCKING_PROVIDER", "DELTA_DYNAMO_TABLE_NAME", "AWS_S3_ALLOW_UNSAFE_RENAME",
                        "AWS_CONDITIONAL_PUT", "conditional_put")


def scheme(location: str) -> str:
    """The URI scheme in lower case; "" for a plain path (a Windows drive letter is a path too)."""
    location = str(location)
    if "://" not in location and not location.startswith("file:"):
        return ""
    found = urlsplit(location).scheme.lower()
    return "" if len(found) == 1 else found


def is_local(location: str) -> bool:
    return scheme(location) in LOCAL_SCHEMES


def is_s3(location: str) -> bool:
    return scheme(location) in S3_SCHEMES


def local_path(location: str) -> str:
    """The absolute filesystem path of a local location (`file:///x` -> `/x`); ValueError for a remote one."""
    location = str(location)
    if not is_local(location):
        raise ValueError(f"{location} is not on the local filesystem")
    if scheme(location) == "file":
        location = unquote(urlsplit(location).path) or "/"
    return os.path.abspath(location)


def normalize(location: str) -> str:
    """One spelling per location: a plain path as given (trailing separators dropped), `file:` URIs as
    `file:///abs/path`, other URIs with their trailing slash dropped."""
    location = str(location)
    if scheme(location) == "file":
        return "file://" + local_path(location)
    if is_local(location):
        return os.path.normpath(location)
    return location.rstrip("/") if not location.endswith("://") else location


def join(location: str, *parts: str) -> str:
    """`location`/`parts` without touching the scheme: join("s3://b/wh", "items") == "s3://b/wh/items"."""
    location = normalize(location)
    parts = tuple(str(p).strip("/") for p in parts if str(p).strip("/"))
    if not parts:
        return location
    if scheme(location) == "":
        return os.path.join(location, *parts)
    return location.rstrip("/") + "/" + "/".join(parts)


def parent(location: str) -> str:
    location = normalize(location)
    if scheme(location) == "":
        return os.path.dirname(location) or "."
    head, _, _ = location.rpartition("/")
    return head if not head.endswith(":/") else head + "/"


def basename(location: str) -> str:
    return normalize(location).rstrip("/").rpartition("/")[2]


def spark_path(location: str) -> str:
    """The location as Spark should read it: `s3://` becomes `s3a://` (hadoop-aws's connector), a plain path is made
    absolute, everything else (`file:///…`, `hdfs://…`, `s3a://…`) is passed untouched."""
    location = str(location)
    kind = scheme(location)
    if kind == "":
        return os.path.abspath(location)
    if kind in ("s3", "s3n"):
        return "s3a" + location[len(kind):]
    return location


def native_path(location: str) -> str:
    """The location for delta-rs, pyarrow and DuckDB: local ones as an absolute path, `s3a://`/`s3n://` as `s3://`."""
    location = normalize(location)
    if is_local(location):
        return local_path(location)
    kind = scheme(location)
    if kind in ("s3a", "s3n"):
        return "s3" + location[len(kind):]
    return location


def _s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _s3_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def storage_options(location: str) -> dict[str, str] | None:
    """delta-rs's `storage_options` for `location`; None for anything but S3 (delta-rs reads the rest itself).

    On S3, delta-rs 1.x refuses to commit without a way to make the commit atomic: set AWS_S3_LOCKING_PROVIDER
    (DynamoDB) or AWS_CONDITIONAL_PUT=etag for concurrent writers; otherwise the single-writer mode is chosen
    (AWS_S3_ALLOW_UNSAFE_RENAME=true): one pipeline writing a table at a time, which the runner's lock gives."""
    if not is_s3(location):
        return None
    options = {key: value for key, value in (
        ("AWS_ENDPOINT_URL", _s3_endpoint()), ("AWS_REGION", _s3_region()),
        ("AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY")),
        ("AWS_SESSION_TOKEN", os.environ.get("AWS_SESSION_TOKEN"))) if value}
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    if endpoint:  # an S3-compatible store (MinIO, moto) answers on paths, not on bucket host names
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    commit = {key: os.environ[key] for key in DELTA_S3_COMMIT_KEYS if os.environ.get(key)}
    options.update(commit or {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"})
    return options


def duckdb_s3_secret(location: str) -> dict[str, str | bool] | None:
    """The settings of a DuckDB `CREATE SECRET (TYPE s3, …)` for `location` (httpfs), from the same environment as
    `storage_options`; None for anything but S3. An endpoint (MinIO, moto) is addressed by path, over plain HTTP when
    its URL says http://."""
    if not is_s3(location):
        return None
    secret: dict[str, str | bool] = {key: value for key, value in (
        ("KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID")), ("SECRET", os.environ.get("AWS_SECRET_ACCESS_KEY")),
        ("SESSION_TOKEN", os.environ.get("AWS_SESSION_TOKEN")), ("REGION", _s3_region())) if value}
    endpoint = _s3_endpoint()
    if endpoint:
        url = urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
        secret.update(ENDPOINT=url.netloc, URL_STYLE="path", USE_SSL=url.scheme != "http")
    return secret


def filesystem(location: str):
    """(pyarrow FileSystem, path inside it) for `location`."""
    from pyarrow import fs

    location = native_path(location)
    if is_local(location):
        return fs.LocalFileSystem(), location
    if is_s3(location):
        kwargs = {"region": _s3_region(), "access_key": os.environ.get("AWS_ACCESS_KEY_ID"),
                  "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
                  "session_token": os.environ.get("AWS_SESSION_TOKEN")}
        endpoint = _s3_endpoint()
        if endpoint:
            url = urlsplit(endpoint)
            kwargs.update(endpoint_override=url.netloc or url.path, scheme=url.scheme or "https")
        kwargs = {k: v for k, v in kwargs.items() if v}
        return fs.S3FileSystem(**kwargs), filesystem_path(location)
    return fs.FileSystem.from_uri(location)


def filesystem_path(location: str) -> str:
    """The path of `location` inside its filesystem (see `filesystem`): `s3://b/k` -> `b/k`, `file:///x` -> `/x`."""
    location = native_path(location)
    if is_local(location):
        return location
    parts = urlsplit(location)
    return (parts.netloc + parts.path).rstrip("/")


def _info(location: str):
    filesys, path = filesystem(location)
    return filesys, path, filesys.get_file_info(path)


def exists(location: str) -> bool:
    from pyarrow import fs

    return _info(location)[2].type != fs.FileType.NotFound


def is_dir(location: str) -> bool:
    """A folder; on object storage, a prefix with at least one object under it."""
    from pyarrow import fs

    return _info(location)[2].type == fs.FileType.Directory


def modified(location: str) -> float | None:
    """Seconds since the epoch of the last change, where the store keeps one (an S3 prefix has none)."""
    mtime = _info(location)[2].mtime
    return mtime.timestamp() if mtime is not None else None


def listdir(location: str) -> list[str]:
    """The names directly under `location`, sorted; [] when it does not exist."""
    from pyarrow import fs

    filesys, path, info = _info(location)
    if info.type != fs.FileType.Directory:
        return []
    return sorted(entry.base_name for entry in filesys.get_file_info(fs.FileSelector(path, allow_not_found=True)))


def read_bytes(location: str) -> bytes | None:
    """The contents of a file; None when there is none at `location`."""
    from pyarrow import fs

    filesys, path, info = _info(location)
    if info.type != fs.FileType.File:
        return None
    with filesys.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole (small) file, whole or not at all: locally a temporary file in the same folder (made when
    missing), then `os.replace`; on an object store one PUT, which is already atomic."""
    filesys, path = filesystem(location)
    if is_local(location):
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return
    with filesys.open_output_stream(path) as stream:
        stream.write(data)


def remove(location: str) -> None:
    """Delete a file or a folder with everything under it; nothing when it does not exist."""
    from pyarrow import fs

    filesys, path, info = _info(location)
    if info.type == fs.FileType.Directory:
        filesys.delete_dir(path)
    elif info.type == fs.FileType.File:
        filesys.delete_file(path)
