"""The JSON API through the test client on a real database."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_health_answers(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok\n"
