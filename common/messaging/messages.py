"""The message types that travel between the services, and the verdict vocabulary."""

ACCOUNT_REGISTERED = "account.registered"
VERIFICATION_CODE_REQUESTED = "account.verification_code_requested"
EMAIL_CODE_SUBMITTED = "email_code.submitted"
EMAIL_CODE_VERDICT = "email_code.verdict"
ACCOUNT_CONFIRMED = "account.confirmed"

CODE_REQUEST_TYPES = frozenset({ACCOUNT_REGISTERED, VERIFICATION_CODE_REQUESTED})
