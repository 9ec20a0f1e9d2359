"""The job store on both of its databases: SQLite in a file, and a fresh database on the test's PostgreSQL."""

import uuid

import pytest

from restyle.stores.jobs import JobStore


@pytest.fixture(params=["sqlite", "postgresql"])
def jobs(request, tmp_path):
    if request.param == "sqlite":
        store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    else:
        server = request.getfixturevalue("postgres")
        import psycopg

        name = f"t{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        store = JobStore(server.url.rsplit("/", 1)[0] + f"/{name}")
    yield store
    store.close()
