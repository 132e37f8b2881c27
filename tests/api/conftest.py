"""No embedded job worker in the API tests: uploads still queue their embedding jobs, but
computing embeddings (the recognition tests' subject) would only slow these tests and compete
for the database. (alice and bob come from tests/fixtures.py, token-only.)"""

from __future__ import annotations

import pytest


@pytest.fixture
def embedded_worker() -> bool:
    return False
