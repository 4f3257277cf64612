"""Schemathesis hooks for scripts/schemathesis.

A real client sends a fresh Idempotency-Key for each distinct request and the same one only to
retry it. Generated cases often share a key (Hypothesis draws small values, the coverage phase the
same bounds for every route), and the service then rightly answers 422 `idempotency_key_reused`
to a different body under a used key, which the fuzzer counts as a valid request refused. So a
positive case that carries the header gets a fresh key of the same length (a coverage case about
the header's own bounds keeps testing them); a case without it (the missing-required-header check)
and a negative case (an invalid key) are sent as generated.
"""

import secrets
import string

import schemathesis
from schemathesis import GenerationMode

HEADER = "idempotency-key"
# The document's pattern: visible ASCII, no space.
VISIBLE = string.ascii_letters + string.digits + string.punctuation


def fresh_key(length: int) -> str:
    if length >= 32:
        return ("fuzz-" + secrets.token_hex(length))[:length]
    return "".join(secrets.choice(VISIBLE) for _ in range(max(length, 1)))


@schemathesis.hook
def before_call(context, case, **kwargs):
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE or not case.headers:
        return
    for name in list(case.headers):
        value = case.headers[name]
        if name.lower() == HEADER and isinstance(value, str):
            case.headers[name] = fresh_key(len(value))
