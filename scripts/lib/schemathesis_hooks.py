"""Schemathesis hooks for scripts/schemathesis.

A real client sends a fresh Idempotency-Key for each distinct request and the same one only to
retry it. Generated cases often share a key (Hypothesis draws small values), and the service then
rightly answers 422 `idempotency_key_reused` to a different body under a used key, which the
fuzzer counts as a valid request refused. So a positive case that carries the header gets a fresh
key; a case without it (the missing-required-header check) and a negative case (an invalid key)
are sent as generated, and so is a coverage case about this header's own bounds.
"""

import uuid

import schemathesis
from schemathesis import GenerationMode

HEADER = "idempotency-key"


@schemathesis.hook
def before_call(context, case, **kwargs):
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE or not case.headers:
        return
    target = getattr(meta.phase.data, "parameter", None)
    if isinstance(target, str) and target.lower() == HEADER:
        return
    for name in list(case.headers):
        if name.lower() == HEADER:
            case.headers[name] = f"fuzz-{uuid.uuid4()}"
