"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from segbench.report.query import ReportData
    from tests.pg import PgServer


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: the tiny convolutions only slow down when threads fight for shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    """The report fixture run (``tests/report_fixtures.py``) as ``segbench report`` loads it."""
    from segbench.report.query import load_report_data
    from tests.report_fixtures import build_report_db

    db = build_report_db(tmp_path_factory.mktemp("report") / "results.db")
    try:
        return load_report_data(db)
    finally:
        db.close()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the module's tests (``tests/pg.py``); skipped without its binaries."""
    from tests.pg import running_server

    with running_server() as server:
        yield server


@pytest.fixture()
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the module's server."""
    return pg_server.new_database()
