"""The privacy officer's read-only web pages under `/officer/`.

Server-rendered HTML (Jinja2, autoescaped) with one stylesheet and no script, Dutch by
default and English on request. Sign-in is for personal `privacy_officer` clients only;
every page view is recorded in the audit log as an `audit_read`. Wire it with
`app.include_router(officer.router)`: the pages stay out of the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter

from broker.officer import holds, impact, pages, requests, signin

ROUTERS: tuple[APIRouter, ...] = (signin.router, pages.router, requests.router, holds.router,
                                  impact.router)
"""Every router of the pages (their routes, for tests that must not forget one)."""

router = APIRouter()
for _part in ROUTERS:
    router.include_router(_part)

__all__ = ["ROUTERS", "router"]
