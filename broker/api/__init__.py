"""Thin routers, one per resource: parse, authorise, call one service, map errors."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Every router of the API, in the order the OpenAPI document lists them."""
    from broker.api import admin, audit, health, maintenance, oauth, reference, signals

    return [
        health.router,
        oauth.router,
        reference.router,
        signals.router,
        audit.router,
        admin.router,
        maintenance.router,
    ]
