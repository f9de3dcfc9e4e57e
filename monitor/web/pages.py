"""The dashboard's HTML pages (filled in by the pages work; `monitor.web.app.create_app` includes `router`)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
