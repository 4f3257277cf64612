"""Schemathesis hooks for scripts/schemathesis: a fresh Idempotency-Key for each request.

The fuzzer draws a valid `Idempotency-Key` from its pattern and draws the same few values again
and again, for requests that differ. The service rightly refuses a key used for another request
(422 `idempotency_key_reused`, as the IETF Idempotency-Key draft says), so most of those requests
would never reach the route. A real client makes one key per request; this does the same by
suffixing a valid key with a counter, keeping it valid. Invalid keys (the negative cases) are sent
as drawn, so the check that they are refused still runs.
"""

import itertools
import re

import schemathesis

_VALID = re.compile(r"^[!-~]{1,255}$")
_counter = itertools.count()


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        value = headers[name]
        suffix = f".{next(_counter)}"
        if isinstance(value, str) and _VALID.match(value) and len(value) + len(suffix) <= 255:
            headers[name] = value + suffix
