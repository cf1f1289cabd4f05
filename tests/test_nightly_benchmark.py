"""benchmarks/nightly.py's parts that need no pipeline: the demo's overrides, the generated size, and the memory of a
step's whole process tree."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import nightly  # noqa: E402
import nightly_table  # noqa: E402


def test_the_demo_overrides_are_demo_shs_and_grow_above_its_large_size(tmp_path):
    script = (REPO / "scripts" / "demo.sh").read_text()
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small.write_bytes(b"x" * 10)
    limit = int(next(line.split("=")[1] for line in script.splitlines() if line.startswith("LARGE_BYTES=")))
    with open(large, "wb") as handle:  # sparse: the size without the bytes
        handle.truncate(limit + 1)
    overrides = nightly.demo_overrides(small)
    assert overrides and all("=" in o for o in overrides)
    assert overrides == bash_array(script, "DEMO")
    extra = nightly.demo_overrides(large)[len(overrides):]
    assert nightly.demo_overrides(large)[: len(overrides)] == overrides
    assert extra and extra == bash_array(script, "DEMO_LARGE")
    assert "pipeline.torch_models=[sasrec,ss4rec]" in extra  # quoted, over two lines: as bash reads them


def bash_array(script: str, name: str) -> list[str]:
    """The values bash itself gives the array `name` that demo.sh defines."""
    import re
    import subprocess

    definition = re.search(rf"^{name}=\([^)]*\)", script, re.MULTILINE).group(0)
    printed = subprocess.run(["bash", "-c", f'{definition}\nprintf "%s\\n" "${{{name}[@]}}"'],
                             capture_output=True, text=True, check=True)
    return printed.stdout.splitlines()


def test_sizes_keep_ml25ms_shape():
    assert nightly.sized(25_000_095, None, None) == {"ratings": 25_000_095, "users": 162_541, "items": 59_047}
    small = nightly.sized(1_000_000, None, None)
    assert small["users"] == round(1_000_000 * 162_541 / 25_000_095) and small["items"] < 59_047
    assert nightly.sized(1_000_000, 10, 20) == {"ratings": 1_000_000, "users": 10, "items": 20}


def test_step_memory_sums_the_steps_process_tree():
    """A step whose child holds 200 MB and grandchild 100 MB more: both counted under the step's name."""
    hold = "import sys, time; x = bytearray(int(sys.argv[1]) << 20); x[::4096] = b'x' * len(x[::4096]); time.sleep(30)"
    spawn = (f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {hold!r}, '100']); "
             f"exec({hold!r}.replace('sys.argv[1]', '200'))")
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', "
                               f"{spawn!r}])"], env={**os.environ, nightly.STEP_ENV: "probe"}, start_new_session=True)
    try:
        peak = 0
        for _ in range(100):
            peak = max(peak, nightly.step_rss_bytes(parent.pid).get("probe", 0))
            if peak > 300 << 20:
                break
            time.sleep(0.1)
        assert peak > 300 << 20
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_the_growth_table_gives_each_steps_exponent_and_the_plot_is_drawn(tmp_path):
    def run(ratings: int, steps: dict[str, float]) -> dict:
        return {"ratings": ratings, "steps": [{"step": s, "status": "ran", "seconds": v, "peak_rss_gb": v / 100}
                                              for s, v in steps.items()]}

    runs = [run(25_000_000, {"etl": 250.0, "train": 100.0, "ease": 60.0}),
            run(1_000_000, {"etl": 10.0, "train": 100.0})]
    table = nightly_table.growth(runs).splitlines()
    # sorted by size; the peak RSS is the largest run's
    assert table[0] == "| step | 1M ratings (s) | 25M ratings (s) | peak RSS at 25M (GB) | growth exponent |"
    assert "| etl | 10 | 250 | 2.50 | 1.00 |" in table  # linear
    assert "| train | 100 | 100 | 1.00 | 0.00 |" in table  # a step budget: flat
    assert "| ease | – | 60 | 0.60 | – |" in table  # one size: no exponent
    assert table[-1] == "| **total** | **110** | **410** | **2.50** | **0.41** |"
    nightly_table.plot(runs, tmp_path / "growth.png")
    assert (tmp_path / "growth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_table_names_a_file_it_cannot_read(tmp_path):
    import pytest

    (tmp_path / "other.json").write_text('{"x": 1}')
    (tmp_path / "broken.json").write_text('{"ratings": ')
    for name, says in [("missing.json", "No such file"), ("other.json", "no ratings, steps, total_seconds"),
                       ("broken.json", "not JSON (line 1")]:
        with pytest.raises(SystemExit) as exc:
            nightly_table.load(str(tmp_path / name))
        assert str(exc.value).startswith(f"error: {tmp_path / name}: ") and says in str(exc.value)
