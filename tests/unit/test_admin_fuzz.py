"""schemathesis over /admin/openapi.json, as tests/unit/test_api_fuzz.py runs it over the public API.

The admin app of the ``system`` fixture's wiring (fakes for MongoDB, Redis and RabbitMQ, rate limits off),
with an admin key of every scope in its ADMIN_KEYS_FILE: every operation gets ``MAX_EXAMPLES`` examples in
positive and negative mode, derandomized, and every built-in check runs on every response (no 5xx,
documented statuses and bodies, invalid data refused, a request without the key refused).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import schemathesis

from auth_service.adapters.admin_keys_file import AdminKeysFile
from auth_service.domain.admin_keys import SCOPES, new_key
from tests.unit.conftest import build_system
from tests.unit.test_api_fuzz import ACCEPTED, MAX_EXAMPLES, REJECTED

# Schema-valid requests an operation may still refuse for what JSON Schema cannot say: a cursor this API
# did not hand out (422), a disable whose end is already past (409), a string that is no address (422).
BUSINESS_REFUSALS = {
    "GET /admin/users": ["422"],
    "GET /admin/audit": ["422"],
    "POST /admin/users/{user_id}/disable": ["404", "409", "422"],
    "DELETE /admin/suppressions/{email}": ["422"],
}

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
        "checks": {
            "negative_data_rejection": {"expected-statuses": REJECTED},
            "positive_data_acceptance": {"expected-statuses": ACCEPTED},
        },
        "operations": [
            {
                "include-name": name,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, *statuses]}},
            }
            for name, statuses in BUSINESS_REFUSALS.items()
        ],
    }
)

# Built while collecting: the parametrization needs the document. Only fakes, no connection.
KEYS_FILE = Path(tempfile.mkdtemp(prefix="admin-fuzz-")) / "admin-keys"
KEY = new_key("fuzzer", SCOPES, datetime.now(UTC))
AdminKeysFile(KEYS_FILE).write([KEY.record])
SYSTEM = build_system({"ADMIN_KEYS_FILE": str(KEYS_FILE)})
schema = schemathesis.openapi.from_wsgi("/admin/openapi.json", SYSTEM.auth.admin_app, config=CONFIG)


@schema.parametrize()
def test_every_admin_operation_answers_as_documented(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY.key}"})
