"""Thin routers, one per resource: parse, authorise, call one service, map errors."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    """Every router of the API, in the order the OpenAPI document lists them.

    Requests are matched against the routes in this order too, so the busiest come first.
    """
    from broker import officer
    from broker.api import metrics
    from broker.api.routes import (
        admin,
        audit,
        disclosures,
        health,
        legal_holds,
        maintenance,
        oauth,
        reference,
        reidentifications,
        signals,
        subject_report,
    )

    return [
        disclosures.router,
        signals.router,
        legal_holds.router,
        legal_holds.list_router,
        oauth.router,
        health.router,
        reference.router,
        reidentifications.router,
        audit.router,
        subject_report.router,
        admin.router,
        maintenance.router,
        officer.router,
        metrics.router,
    ]
