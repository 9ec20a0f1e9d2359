"""/api/webhook-secret: the secret that signs a tenant's webhook deliveries (restyle.service.webhooks)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query

from restyle.service.context import Principal
from restyle.service.http.auth import caller
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.schemas import WebhookSecret
from restyle.service.http.web import Web, web
from restyle.service.webhooks import tenant_secret

router = APIRouter(route_class=PolicyRoute)


@router.get(
    "/api/webhook-secret",
    response_model=WebhookSecret,
    summary="Your webhook signing secret (Standard Webhooks: whsec_ + base64); admins may ask for any owner's",
)
def webhook_secret(
    owner: str | None = Query(
        None, max_length=64, description="admins only: another owner's (@inbox for dropped files' jobs)"
    ),
    who: Principal = Depends(caller),
    app: Web = Depends(web),
) -> WebhookSecret:
    if owner is not None and owner != who.name and not who.is_admin:
        raise HTTPException(403, "only admins may read another owner's webhook secret")
    name = owner or who.name
    return WebhookSecret(owner=name, secret=tenant_secret(app.context, name))
