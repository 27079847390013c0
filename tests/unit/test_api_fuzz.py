"""schemathesis over /openapi.json: generated requests, valid and invalid, against the app in process.

Every operation gets ``MAX_EXAMPLES`` examples in positive and negative mode,
derandomized so that a run is repeatable, and every built-in check runs on
every response: no 5xx, status codes, headers, content types and bodies as
documented, invalid data rejected, missing auth refused. The app is the one
the ``system`` fixture builds (fakes for MongoDB, Redis and RabbitMQ, rate
limits off so that the fuzzer is not stopped by them).
"""

from __future__ import annotations

import schemathesis

from tests.unit.conftest import build_system

MAX_EXAMPLES = 60
# Schema-valid requests these operations may still refuse, for reasons JSON Schema cannot state:
# a password's length is counted in UTF-8 bytes and checked against the common-password list and
# for patterns (a new password is checked before the Bearer token, as every body is); an address
# that "format: email" admits may have a special-use domain (.test, which the generator likes) or
# another form accounts may not have (422); a well-formed code may be wrong (400) or there may be
# no live code for the address (410); a verification link's token is a string to the schema, and
# most strings are no link of ours (400 page), and most strings are no sign-in challenge (410). A mail
# provider's report is an object, or a text, to the schema, and most are no report (400).
BUSINESS_REFUSALS = {
    "POST /auth/register": ["422"],
    "POST /auth/confirm": ["400", "410", "422"],
    "POST /auth/resend-code": ["422"],
    "POST /auth/login": ["422"],
    "POST /auth/password/change": ["422"],
    "POST /auth/password/forgot": ["422"],
    "POST /auth/password/reset": ["400", "410", "422"],
    "POST /auth/email/change": ["422"],
    "POST /auth/email/confirm": ["400", "410"],
    "POST /auth/login/code": ["422"],
    "POST /auth/login/code/verify": ["400", "410", "422"],
    "POST /auth/login/verify": ["400", "410"],
    "GET /auth/verify": ["400"],
    "POST /auth/verify": ["400", "410"],
    "GET /auth/not-me": ["400", "410"],
    "POST /auth/not-me": ["400", "410"],
    "POST /auth/account/delete/confirm": ["400", "410"],
    "GET /auth/account/restore": ["400", "410"],
    "POST /auth/account/restore": ["400", "410"],
    "POST /webhooks/mail/postmark": ["400"],
    "POST /webhooks/mail/ses": ["400"],
}
ACCEPTED = ["2xx", "401", "403", "404", "409", "429"]
# schemathesis's own list of rejections, plus 413: a generated body past MAX_BODY_BYTES is refused
# for its size before anything else (documented as every operation's default error).
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
        "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
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
SYSTEM = build_system()
schema = schemathesis.openapi.from_wsgi("/openapi.json", SYSTEM.auth.app, config=CONFIG)


@schema.parametrize()
def test_every_operation_answers_as_documented(case):
    case.call_and_validate()
