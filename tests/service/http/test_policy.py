"""The route policy table is the one source: the guard reads it, and the OpenAPI document shows it."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.service.http.app import create_app
from restyle.service.http.guard import routes_of
from restyle.service.http.policy import ROUTES, Access, Files, policy_for
from tests.service.test_api import ALICE, ROOT, auth


@pytest.fixture()
def app(tmp_path):
    return create_app(Settings(home=tmp_path / "home", tokens=f"alice:submitter:{ALICE},root:admin:{ROOT}"))


def test_the_openapi_document_shows_the_policy_table(app):
    operations = TestClient(app).get("/openapi.json").json()["paths"]
    seen = 0
    for path, methods in operations.items():
        for method, operation in methods.items():
            policy = policy_for(method.upper(), path)
            assert operation["x-restyle-access"] == policy.access, (method, path)
            assert operation["x-restyle-files"] == policy.files, (method, path)
            limit = " + ".join(policy.limit) if policy.files != Files.NONE else "max_request_bytes"
            assert operation["x-restyle-limit"] == limit, (method, path)
            seen += 1
    assert seen > 15
    documented = {(m.upper(), p) for p, methods in operations.items() for m in methods}
    assert ("POST", "/api/models") in documented and ("POST", "/api/jobs") in documented


def test_every_route_in_the_table_is_a_route_of_the_app_and_shows_its_policy(app):
    routes = {
        (method, route.path): route
        for route in routes_of(app.router)
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    for (method, path), policy in ROUTES.items():
        assert (method, path) in routes, f"{method} {path} is in the policy table but is no route"
        assert routes[method, path].openapi_extra["x-restyle-access"] == policy.access


def test_a_405_names_every_method_at_the_path(app):
    response = TestClient(app).patch("/api/jobs", headers=auth(ROOT))
    assert response.status_code == 405 and set(response.headers["allow"].split(", ")) == {"GET", "POST"}


def test_the_guard_enforces_the_table(app):
    client = TestClient(app)
    admin_only = [(m, p) for (m, p), policy in ROUTES.items() if policy.access == Access.ADMIN]
    assert admin_only
    for method, path in admin_only:
        concrete = path.replace("{name}", "some-name")
        assert client.request(method, concrete).status_code == 401, (method, path)
        assert client.request(method, concrete, headers=auth(ALICE)).status_code == 403, (method, path)
