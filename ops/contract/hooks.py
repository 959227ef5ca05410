"""Schemathesis hooks of ops/contract/contract_test.sh (SCHEMATHESIS_HOOKS).

Every POST, PATCH and DELETE documents an optional Idempotency-Key header, and the
generator draws few distinct values for it ("0" most of all): most writes would then be
answered as a retry of another request's key (400 IDEMPOTENCY_KEY_REUSED) instead of
reaching their handler. A unique suffix on each valid drawn key, just before the call (so
in every phase), keeps each write its own request; keys drawn invalid (empty, a space or a
tab, not ASCII, too long) are sent as drawn and must be refused.
"""
import re
import uuid

import schemathesis

KEY = "Idempotency-Key"
VALID = re.compile(r"[!-~]{1,200}")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == KEY.lower() and isinstance(value, str) and VALID.fullmatch(value):
            headers[name] = value + "-" + uuid.uuid4().hex
