"""Schemathesis hooks for scripts/schemathesis.

A real client sends a fresh Idempotency-Key for each distinct request and the same one only to
retry it. Generated cases often share a key (Hypothesis draws small values, the coverage phase the
same bounds for every route), and the service then rightly answers 422 `idempotency_key_reused`
to a different body under a used key, which the fuzzer counts as a valid request refused. So a
positive case that carries the header gets a fresh key (of the same length for a coverage case
about the header's own bounds, so they are still tested); a case without it (the missing-required-header check)
and a negative case (an invalid key) are sent as generated.
"""

import itertools
import string
import threading
import uuid

import schemathesis
from schemathesis import GenerationMode

HEADER = "idempotency-key"
# The document's pattern: visible ASCII, no space.
VISIBLE = string.ascii_letters + string.digits + string.punctuation
_counter = itertools.count()
_lock = threading.Lock()


def key_of_length(length: int) -> str:
    """A key not used before in this run, of the given length (as unique as the length allows)."""
    with _lock:
        n = next(_counter)
    digits = []
    for _ in range(max(length, 1)):
        n, d = divmod(n, len(VISIBLE))
        digits.append(VISIBLE[d])
    return "".join(reversed(digits))


@schemathesis.hook
def before_call(context, case, **kwargs):
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE or not case.headers:
        return
    bounds = str(getattr(meta.phase.data, "parameter", "") or "").lower() == HEADER
    for name in list(case.headers):
        value = case.headers[name]
        if name.lower() == HEADER and isinstance(value, str):
            case.headers[name] = key_of_length(len(value)) if bounds else f"fuzz-{uuid.uuid4()}"
