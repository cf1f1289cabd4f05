"""`recsys ship [--out DIR]`: the project's code that Spark executors import, as one zip for `spark-submit --py-files`.

Spark steps run functions of `recsys_spark` on the executors (the ALS top-N's blocks, ItemCF's neighbour blocks, the
sequence shards' writers); there the package is imported from what the driver shipped, not from an install on every
node. The zip holds `recsys_core` and `recsys_spark` (a torch model's top-N runs in plain Python on a GPU node, not
on executors): `dist/recsys-<version>.zip`, the same bytes for the same sources (sorted entries, fixed timestamps),
written atomically. `recsys pipeline --env cluster` builds it before its first step and puts it on every
spark-submit line; the executors' Python must still hold the third-party packages (numpy, scipy, pandas, pyarrow).
The alternative PySpark's documentation gives, a packed environment through `--archives`, is in docs/CLUSTER.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/ship.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.common import guarded  # noqa: E402
from jobs.steps import PROJECT_ROOT  # noqa: E402

SHIPPED_PACKAGES = ("recsys_core", "recsys_spark")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can say: the archive depends on the sources only


def shipped_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The package sources that ship, sorted (no caches)."""
    return sorted(path for package in SHIPPED_PACKAGES for path in (root / package).rglob("*.py")
                  if "__pycache__" not in path.parts)


def archive_path(out_dir: Path | None = None) -> Path:
    """Where the zip of this version goes: <project>/dist/recsys-<version>.zip unless `out_dir` says otherwise."""
    from jobs.cli import version

    return Path(out_dir or PROJECT_ROOT / "dist") / f"recsys-{version()}.zip"


def build(out_dir: Path | None = None, root: Path = PROJECT_ROOT) -> Path:
    """Write the zip (atomically: a submit reading the previous one never sees half a file); its path."""
    target = archive_path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in shipped_files(root):
            entry = zipfile.ZipInfo(path.relative_to(root).as_posix(), ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, path.read_bytes())
    temp.replace(target)
    return target


@guarded
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="recsys ship", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for the zip (default: dist/ in the project)")
    args = parser.parse_args(argv)
    path = build(args.out)
    print(f"{path} ({len(shipped_files())} files of {', '.join(SHIPPED_PACKAGES)}): pass it to spark-submit "
          f"--py-files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
