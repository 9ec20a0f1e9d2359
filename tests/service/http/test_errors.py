"""Domain errors become statuses in one table (service/http/app.py): bad input is 422, a store down is 503."""

from __future__ import annotations

import pytest

from restyle.errors import (
    BadKey,
    Conflict,
    InputError,
    Invalid,
    JobStoreError,
    ModelError,
    NotFound,
    RestyleError,
    StoreError,
    TooLarge,
)
from restyle.service.http.app import status_of


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Invalid, 422),
        (InputError, 422),
        (ModelError, 422),
        (NotFound, 404),
        (Conflict, 409),
        (TooLarge, 413),
        (StoreError, 503),
        (BadKey, 503),
        (JobStoreError, 503),
        (RestyleError, 503),
    ],
)
def test_each_domain_error_has_its_status(error, status):
    assert status_of(error("why")) == status


def test_the_most_specific_class_wins():
    class Stale(NotFound):
        pass

    assert status_of(Stale("gone")) == 404


def test_bad_input_is_422_with_its_reason_not_503(tmp_path):
    """An InputError from the domain (an unreadable sidecar, a video that is no video) is the caller's to fix."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from restyle.service.http.app import restyle_error

    app = FastAPI()
    app.add_exception_handler(RestyleError, restyle_error)

    @app.get("/bad")
    def bad():
        raise InputError("the input has no video stream")

    @app.get("/down")
    def down():
        raise JobStoreError("cannot reach job store")

    client = TestClient(app)
    assert client.get("/bad").json() == {"detail": "the input has no video stream"}
    assert client.get("/bad").status_code == 422
    assert client.get("/down").status_code == 503
    assert client.get("/down").json()["detail"].startswith("service unavailable: ")
