"""Checks that the fuzzing reached every operation of the API with real data (scripts/schemathesis).

Schemathesis' own "missing test data" warning only notices an operation that keeps answering 404,
and its stateful phase may end early, so an operation that only ever answered 404, 409 or 422
(never given an id that exists, or a body the service accepts) would pass unnoticed: its checks
would only have seen refusals. This reads the NDJSON reports of a run and fails unless every
operation of the served document answered at least one 2xx, apart from the named exceptions.

Usage: schemathesis_exercised.py OPENAPI_JSON NDJSON... [--except "METHOD /path"]...
"""

import json
import sys
from collections import Counter

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def main(argv: list[str]) -> int:
    args, excepted = [], set()
    rest = iter(argv)
    for arg in rest:
        if arg == "--except":
            excepted.add(next(rest))
        else:
            args.append(arg)
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    document, reports = args[0], args[1:]
    with open(document, encoding="utf-8") as f:
        paths = json.load(f)["paths"]
    operations = [f"{m.upper()} {p}" for p, item in paths.items() for m in item if m in METHODS]
    unknown = excepted - set(operations)
    if unknown:
        # An exception naming nothing would hide a renamed route.
        print(f"schemathesis: exceptions not in the document: {sorted(unknown)}", file=sys.stderr)
        return 1

    sent, succeeded = Counter(), Counter()
    for report in reports:
        with open(report, encoding="utf-8") as f:
            for line in f:
                scenario = json.loads(line).get("ScenarioFinished")
                if not scenario:
                    continue
                recorder = scenario["recorder"]
                for case_id, interaction in recorder.get("interactions", {}).items():
                    case = recorder["cases"].get(case_id, {}).get("value")
                    response = interaction.get("response")
                    if case is None or response is None:
                        continue
                    operation = f"{case['method'].upper()} {case['path']}"
                    sent[operation] += 1
                    if 200 <= response["status_code"] < 300:
                        succeeded[operation] += 1

    missing = [op for op in operations if not succeeded[op] and op not in excepted]
    reached = sum(1 for op in operations if succeeded[op])
    print(
        f"schemathesis: {reached}/{len(operations)} operations answered 2xx "
        f"({len(excepted)} excepted) over {sum(sent.values())} requests"
    )
    if missing:
        print("schemathesis: never answered 2xx (never exercised with real data):", file=sys.stderr)
        for op in missing:
            print(f"  - {op} ({sent[op]} requests)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
