"""nbval runs every notebook here (`--nbval-lax` in pyproject): cells marked NBVAL_CHECK_OUTPUT must
reproduce their committed output, every other cell must run without error (issue 7)."""
import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebooks)
