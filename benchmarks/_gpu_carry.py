"""The quality set the GPU check carries to the accelerator machine (benchmarks/gpu_check.py): written here from
exported shards (`scripts/gpu_check.sh --prepare`), read there with numpy alone, and the size of what travels."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recsys_torch.data import ShardSpec, make_loader  # noqa: E402
from recsys_torch.errors import RecsysError  # noqa: E402
from recsys_torch.shards import EVAL_COLUMNS, SEQUENCE_COLUMNS, count_rows, read_meta  # noqa: E402

CARRY = REPO / ".gpu_carry" / "ml-latest-small"
ARRAYS = "arrays.npz"
CARRY_LIMIT_MIB = 64  # what the device machine takes: the repository's files and the carried folder


def load_quality_set(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    meta_path, arrays_path = folder / "meta.json", folder / ARRAYS
    if not meta_path.is_file() or not arrays_path.is_file():
        raise RecsysError(f"the quality set is missing: {folder} needs meta.json and {ARRAYS} "
                          f"(prepare it with `scripts/gpu_check.sh --prepare`, docs/GPU.md)")
    with np.load(arrays_path) as npz:
        return json.loads(meta_path.read_text()), {name: npz[name] for name in npz.files}


def reader_matches_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> str:
    """The carried validation shard read through recsys_torch.data's pyarrow reader equals the carried arrays."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return "skipped (pyarrow absent)"
    batch = read_all(folder / "validation", EVAL_COLUMNS, reader="pyarrow")
    same = all(np.array_equal(batch[name], arrays[f"validation.{name}"]) for name in EVAL_COLUMNS)
    return f"{'identical' if same else 'DIFFERENT'} ({len(batch['user_idx'])} rows)"


def read_all(split: Path, columns, reader: str | None = None) -> dict[str, np.ndarray]:
    """Every row of a shard split in file order, as one batch, through recsys_torch.data."""
    _, loader = make_loader(ShardSpec(split, tuple(columns), batch_size=max(1, count_rows(split)), shuffle=False,
                                      reader=reader))
    batches = list(loader)
    return {name: torch.cat([b[name] for b in batches]).numpy() for name in columns}


def prepare(shards: Path, out: Path, source: str) -> int:
    """The carried quality set from exported shards: meta.json, train/ and validation/ as exported, and every row
    of both in arrays.npz (read through recsys_torch.data, file order) for a machine without pyarrow."""
    meta = read_meta(shards)
    arrays = {}
    for split, columns in (("train", ("user_idx",) + SEQUENCE_COLUMNS), ("validation", EVAL_COLUMNS)):
        for name, values in read_all(shards / split, columns).items():
            arrays[f"{split}.{name}"] = values.astype(np.int64 if "timestamp" in name else np.int32)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for split in ("train", "validation"):
        shutil.copytree(shards / split, out / split)
    (out / "meta.json").write_text(json.dumps({**meta, "source": source}, indent=2))
    np.savez_compressed(out / ARRAYS, **arrays)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"quality set -> {out}: {len(arrays['train.items']):,} train windows, "
          f"{len(arrays['validation.user_idx']):,} validation rows, {size / 2**20:.1f} MiB")
    return 0


def travelling_bytes(carried: Path) -> tuple[int, int]:
    """(the repository's files, the carried folder) in bytes: what the device machine receives. The repository's
    files are git's tracked and untracked-but-not-ignored ones (what travels without being carried)."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    repo = sum((REPO / name).stat().st_size for name in listed if name and (REPO / name).is_file())
    carry = sum(f.stat().st_size for f in carried.rglob("*") if f.is_file()) if carried.exists() else 0
    return repo, carry


def report_carried_size(carried: Path) -> int:
    repo, carry = travelling_bytes(carried)
    total = (repo + carry) / 2**20
    fits = total < CARRY_LIMIT_MIB
    print(f"travels to the GPU machine: repository files {repo / 2**20:.1f} MiB + {carried} {carry / 2**20:.1f} MiB "
          f"= {total:.1f} MiB ({'under' if fits else 'OVER'} the {CARRY_LIMIT_MIB} MiB limit)")
    return 0 if fits else 1
