"""Property-based run of schemathesis against the OpenAPI description the server serves.

For every operation, schemathesis generates request bodies that fit the schema
(positive) and bodies that do not (negative); each goes over real HTTPS as an
account holding every management permission. Whatever arrives, the server must
answer without a 5xx, with JSON, and refusals in the documented error shape.
Bounded: a few examples per operation and mode, on every database backend.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from e2e.api_client import ADMIN_PERMISSIONS, API_SETTINGS, api_client, api_token
from e2e.harness import BACKENDS, LdapServer, serving
from ldapsrv.api.errors import ERROR_CODES

EXAMPLES_PER_OPERATION = 8
TIME_BUDGET_SECONDS = 100.0


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LdapServer]:
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"api-fuzz-{backend}")
    with serving(backend, workdir, settings={"api": API_SETTINGS}) as started:
        started.create_service_account("fuzzer")
        for permission in ADMIN_PERMISSIONS:
            started.grant(permission, user="fuzzer")
        yield started


def _check(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text}"
    headers = {name.lower(): value for name, value in response.headers.items()}
    content_type = headers.get("content-type")
    assert content_type in ("application/json", ["application/json"]), what
    if response.status_code != 200:
        code = response.json()["error"]["code"]
        assert code in ERROR_CODES, f"{what}: undocumented code {code!r}"


def fuzz(
    operation: Any, mode: GenerationMode, send: Callable[[Any], Any], statuses: Counter[int]
) -> None:
    """Send ``EXAMPLES_PER_OPERATION`` generated cases of ``operation`` in ``mode``."""

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = send(case)
        _check(response, f"{operation.label} ({mode.value}) {case.body!r}")
        statuses[response.status_code] += 1

    run()


def test_no_generated_request_gets_a_server_error(server: LdapServer) -> None:
    with api_client(server) as http:
        spec = http.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    token = api_token(server, "fuzzer", "fuzzer-api", "--expires", "1d")
    session = requests.Session()
    session.auth = ("fuzzer", token)
    call = {
        "base_url": f"https://{server.host}:{server.api_port}",
        "session": session,
        "verify": str(server.ca_path),  # verified against the dev CA, never disabled
        "timeout": 30,
    }
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(spec["paths"]) > 20
    statuses: Counter[int] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, lambda case: case.call(**call), statuses)
        assert time.monotonic() - started < TIME_BUDGET_SECONDS, "fuzzing took too long"
    # Both kinds of answer were reached: commands that ran, and validation refusals.
    assert statuses[200] > len(operations) and statuses[400] > len(operations), statuses
    # The fuzzer's own token survived (nothing it generated named it).
    with api_client(server) as http:
        response = http.post("/server.ping", auth=("fuzzer", token))
        assert response.status_code == 200
