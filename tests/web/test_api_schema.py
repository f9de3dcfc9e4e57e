"""Schema-driven: schemathesis generates requests from the API's own OpenAPI document; none may end in a 500.

Bounded (a few examples per operation, no shrinking) so that it runs in seconds; the generated values reach
every parameter's parsing (times, cursors, symbols, numbers) on a database with real history.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.web.conftest import create_app_on

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extras")

from schemathesis.checks import not_a_server_error  # noqa: E402


@pytest.fixture
def api_schema(web_db_url: str) -> Iterator[Any]:
    # schemathesis's ASGI client names the host `testserver`: the app is told that is its public name.
    app = create_app_on(web_db_url, web_public_url="http://testserver")
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.engine.dispose()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_generated_request_is_a_server_error(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, response.text
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = response.json()
        assert list(body) == ["error"] and "\n" not in body["error"]  # every refusal is one JSON line
