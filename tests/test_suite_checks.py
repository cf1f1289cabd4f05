"""benchmarks/suite_checks.py counts what it says: test functions, asserts, and the asserts that read the warehouse."""
import importlib.util
import subprocess

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("suite_checks", REPO / "benchmarks" / "suite_checks.py")
suite_checks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite_checks)

SOURCE = '''
def helper(x):
    assert x

def test_plain():
    assert 1 == 1
    assert 2 == 2

def test_reads(small_warehouse):
    rows = read_arrow(small_warehouse)
    assert rows

    def inner():
        assert True
'''


def test_counts_tests_asserts_and_the_warehouse_ones():
    assert suite_checks.count({"tests/test_x.py": SOURCE}) == {
        "files": 1, "test_functions": 2, "asserts": 5, "warehouse_asserts": 1}


def test_reads_a_revision_without_checking_it_out():
    if subprocess.run(["git", "cat-file", "-e", "186089f^{commit}"], cwd=REPO, capture_output=True).returncode:
        pytest.skip("a shallow clone: commit 186089f (the suite before the shared nightly) is not in it")
    found = suite_checks.count(suite_checks.sources("186089f"))
    assert found == {"files": 57, "test_functions": 362, "asserts": 1372, "warehouse_asserts": 682}
