"""Builds a small world of real objects for the fuzzing in scripts/schemathesis, through the API.

The fuzzer alone cannot walk the business flow (publish, KYC, open, pledge, pay, close, payout,
fund a sponsor): the operations at the end of it only ever saw unknown ids and answered 404, 409
or 422, so their checks never looked at a real answer. This makes, through the HTTP API as a
client would, objects each of those operations can act on, and writes their ids per operation:

    {"POST /v1/offers/{id}/close": {"path.id": ["…", …]}, …}

`--toml` renders that file as schemathesis configuration (dictionaries bound to parameters, see
`toml()` for why and with which probability).

The service runs on a manual clock that the fuzzer moves anywhere between year 1 and 9999 (its
coverage phase alone sets it to 2000), so the objects depend on it as little as they can: offers
open in year 1 and close at the end of 9999, cheques expire then, rounds close early (their
minimum is one funded share) instead of waiting for their closing time, and the pledges to
revoke are made with the clock moved to the end of 9999 (then put back). State-changing operations consume
their object, so there are a few of each. Any answer other than the expected one stops the run
(exit 1, with the answer).

The ECSP gate (docs/investor-protection.md) asks more of the flow: every offer opens with its Key
Investment Information Sheet (KIIS below), every pledge names its hash, and an investor who is not
sophisticated pledges only under an appropriateness record. A record is valid two years from the
service's clock when it is recorded, so every seeded investor's is recorded with the clock at
RECORDED, two years before FAR: valid whatever time the fuzzer moves the clock to before then.

Usage: schemathesis_seed.py BASE_URL OPERATOR_KEY OUT_JSON
       schemathesis_seed.py --toml OUT_JSON
"""

import hashlib
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

OPENS_AT = "0001-01-01T00:00:00Z"
FAR = "9999-12-31T00:00:00Z"
# When the pledges to revoke are made: their 4-day reflection period then ends after any time
# but the last days of 9999, wherever the fuzzer has moved the clock.
LATE = "9999-12-20T00:00:00Z"
# An address nothing listens on: deliveries fail and wait for their retry, as long as needed.
UNREACHABLE = "http://127.0.0.1:9/hook"
# When the seeded investors' appropriateness records are made: valid until FAR (two years on).
RECORDED = "9997-12-31T00:00:00Z"
# The SHA-256 of the seeded offers' KIIS (in French), which their pledges name; AMENDED, of the new
# version that amends one of them, under which its pledges are reconfirmed.
KIIS = hashlib.sha256(b"The key investment information sheet of the seeded offers, version 1\n").hexdigest()
AMENDED = hashlib.sha256(b"The key investment information sheet of the seeded offers, version 2\n").hexdigest()
KIIS_URL = "https://platform.example/seed/kiis-fr.pdf"
APPROPRIATENESS = {"knowledge_test": "passed", "loss_capacity": "5000.00", "currency": "EUR",
                   "answers_ref": "quiz/seed"}


class Seeding(Exception):
    pass


class Api:
    def __init__(self, base: str, key: str):
        self.base = base.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, body=None, expect=(200,), headers=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode(errors="replace")
        if status not in expect:
            raise Seeding(f"{method} {path} {json.dumps(body)}: expected {expect}, got {status}: {text}")
        return json.loads(text) if text else None

    def post(self, path, body=None, expect=(200,), **kw):
        return self.call("POST", path, {} if body is None else body, expect, **kw)

    def get(self, path):
        return self.call("GET", path)


def seed(api: Api) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = {}

    def give(operation: str, parameter: str, *values):
        out.setdefault(operation, {}).setdefault(parameter, []).extend(values)

    # First, so that the events below are fanned out to them as deliveries. Two: the fuzzer may
    # delete one, through an id it read from the list, before it asks for a redelivery.
    endpoints = [
        api.post("/v1/webhook-endpoints", {"url": UNREACHABLE, "events": ["offer.opened", "offer.succeeded"]},
                 (201,))["id"]
        for _ in range(2)
    ]

    project = api.post(
        "/v1/projects",
        {
            "name": "Seed", "legal_name": "Seed SAS", "legal_form": "SAS", "country": "FR",
            "territory": "Pays de Brest", "themes": ["employment"], "description": "Seeded for the fuzzer.",
            "impact_indicators": [],
        },
        (201,),
    )["id"]
    api.post(f"/v1/projects/{project}/publish")

    def investor(name: str, classification: str) -> str:
        body = {"kind": "natural", "name": name, "email": f"{uuid.uuid4().hex}@example.org", "country": "FR",
                "classification": classification}
        id = api.post("/v1/investors", body, (201,))["id"]
        api.post(f"/v1/investors/{id}/kyc", {"status": "verified"})
        return id

    sophisticated = [investor(f"Seed {i}", "sophisticated") for i in range(3)]
    retail = [investor(f"Seed retail {i}", "non_sophisticated") for i in range(2)]
    # Retail investors whose pledges are asked to be reconfirmed, and ones for the fuzzer to
    # record tests for and to reclassify (apart, so that what it records or decides for them
    # changes no pledge seeded for the other operations).
    reconfirming = [investor(f"Seed reconfirming {i}", "non_sophisticated") for i in range(3)]
    assessed = [investor(f"Seed assessed {i}", "non_sophisticated") for i in range(2)]
    reclassified = [investor(f"Seed reclassified {i}", "non_sophisticated") for i in range(2)]

    # Every one of them with a passed appropriateness record valid until FAR (see RECORDED): the
    # sophisticated ones too, so that they still pledge should the fuzzer reclassify them.
    now = api.get("/v1/sandbox/clock")["now"]
    api.post("/v1/sandbox/clock", {"now": RECORDED})
    for who in sophisticated + retail + reconfirming + assessed + reclassified:
        api.post(f"/v1/investors/{who}/appropriateness", APPROPRIATENESS, (201,))
    api.post("/v1/sandbox/clock", {"now": now})
    give("POST /v1/investors/{id}/appropriateness", "path.id", *assessed)
    for field, value in APPROPRIATENESS.items():
        give("POST /v1/investors/{id}/appropriateness", f"body.{field}", value)
    give("GET /v1/investors/{id}/appropriateness", "path.id", *assessed, *retail)
    give("POST /v1/investors/{id}/classification", "path.id", *reclassified)
    give("POST /v1/investors/{id}/classification", "body.classification", "sophisticated")

    # 1 to 1,000 shares at 10.00, first come; one funded share reaches the minimum.
    terms = {
        "currency": "EUR", "share_price": "10.00", "min_target": "10.00", "max_target": "10000.00",
        "min_ticket": "10.00", "opens_at": OPENS_AT, "closes_at": FAR, "success_fee_rate": "0.05",
        "allocation": "first_come",
    }

    def document(offer_id: str, sha256: str, url: str = KIIS_URL) -> dict:
        body = {"kind": "kiis", "language": "fr", "url": url, "sha256": sha256}
        return api.post(f"/v1/offers/{offer_id}/documents", body, (201,))

    def offer(open_it=True, kiis=True) -> str:
        """An offer, with its KIIS unless `kiis` is false (a draft only: none opens without)."""
        id = api.post(f"/v1/projects/{project}/offers", terms, (201,))["id"]
        if kiis or open_it:
            document(id, KIIS)
        if open_it:
            api.post(f"/v1/offers/{id}/open")
        return id

    def pledge(offer_id: str, who: str, shares: int = 1) -> dict:
        body = {"investor_id": who, "shares": shares, "funding": [{"kind": "card", "amount": f"{10 * shares}.00"}],
                "kiis_sha256": KIIS}
        return api.post(f"/v1/offers/{offer_id}/pledges", body, (201,), headers={"Idempotency-Key": str(uuid.uuid4())})

    def pay(p: dict) -> str:
        payment = p["payment"]["payment_id"]
        api.post(f"/v1/sandbox/payments/{payment}/succeed")
        for _ in range(100):
            if api.get(f"/v1/pledges/{p['id']}")["status"] == "funded":
                return payment
            time.sleep(0.1)
        raise Seeding(f"pledge {p['id']} not funded after its payment succeeded")

    # Drafts to open (each with its KIIS), and offers for the fuzzer to cancel (see ALWAYS below
    # for why).
    give("POST /v1/offers/{id}/open", "path.id", *(offer(open_it=False) for _ in range(3)))
    give("POST /v1/offers/{id}/cancel", "path.id", offer(open_it=False), offer(), offer())
    # Drafts without a KIIS to give documents to (see ALWAYS): any kind, language and hash, at an
    # address a document may have.
    give("POST /v1/offers/{id}/documents", "path.id", *(offer(open_it=False, kiis=False) for _ in range(3)))
    give("POST /v1/offers/{id}/documents", "body.url", KIIS_URL)

    # Paid retail pledges in their reflection period to revoke (paid, since the fuzzer may fail
    # a pending payment it read from a list, which cancels its pledge), and one revoked into a
    # pending refund. Made late (see LATE), before the pending payments below, which the
    # background jobs would find overdue meanwhile (the offers made so far close only in 9999).
    reflecting = offer()
    now = api.get("/v1/sandbox/clock")["now"]
    api.post("/v1/sandbox/clock", {"now": LATE})
    for who in retail + retail[:1]:
        p = pledge(reflecting, who)
        pay(p)
        give("POST /v1/pledges/{id}/revoke", "path.id", p["id"])
    revoked = pledge(reflecting, retail[1])
    pay(revoked)
    api.post(f"/v1/pledges/{revoked['id']}/revoke")
    api.post("/v1/sandbox/clock", {"now": now})
    for _ in range(100):
        refunds = api.get(f"/v1/refunds?pledge_id={revoked['id']}")["items"]
        if refunds:
            break
        time.sleep(0.1)
    else:
        raise Seeding(f"no refund for the revoked paid pledge {revoked['id']}")
    give("GET /v1/refunds/{id}", "path.id", refunds[0]["id"])
    give("POST /v1/sandbox/refunds/{id}/succeed", "path.id", refunds[0]["id"])

    # Paid retail pledges on an offer whose KIIS is then amended: each to reconfirm under the new
    # version. Made late too (see LATE), so that their 4 days to reconfirm run past any time but
    # the last days of 9999, and paid, for the same reasons as the pledges to revoke.
    amended = offer()
    api.post("/v1/sandbox/clock", {"now": LATE})
    to_reconfirm = []
    for who in reconfirming:
        p = pledge(amended, who)
        pay(p)
        to_reconfirm.append(p["id"])
    amendment = document(amended, AMENDED, "https://platform.example/seed/kiis-fr-v2.pdf")
    api.post("/v1/sandbox/clock", {"now": now})
    if amendment.get("pledges_to_reconfirm") != len(to_reconfirm):
        raise Seeding(f"the amendment of offer {amended} asked {amendment}, not {len(to_reconfirm)} pledges")
    give("POST /v1/pledges/{id}/reconfirm", "path.id", *to_reconfirm)
    give("POST /v1/pledges/{id}/reconfirm", "body.kiis_sha256", AMENDED)

    # An open offer taking pledges: the fuzzer's own (an eligible investor, one share at its
    # price), pending card payments to succeed or fail, a paid one to dispute.
    taking = offer()
    give("POST /v1/offers/{id}/pledges", "path.id", taking)
    give("POST /v1/offers/{id}/pledges", "body.investor_id", *sophisticated)
    give("POST /v1/offers/{id}/pledges", "body.shares", 1)
    give("POST /v1/offers/{id}/pledges", "body.funding[*].kind", "card")
    give("POST /v1/offers/{id}/pledges", "body.funding[*].amount", "10.00")
    give("POST /v1/offers/{id}/pledges", "body.kiis_sha256", KIIS)
    give("GET /v1/offers/{id}/documents", "path.id", taking, amended)
    pending = [pledge(taking, who) for who in sophisticated]
    for p in pending:
        give("GET /v1/pledges/{id}", "path.id", p["id"])
        give("POST /v1/sandbox/payments/{id}/succeed", "path.id", p["payment"]["payment_id"])
        give("POST /v1/sandbox/payments/{id}/fail", "path.id", p["payment"]["payment_id"])
    paid = pledge(taking, sophisticated[0])
    give("POST /v1/sandbox/payments/{id}/dispute", "path.id", pay(paid))
    give("GET /v1/pledges/{id}", "path.id", paid["id"])
    # A paid one disputed, for its dispute to be decided (the sandbox names it from the payment).
    contested = pay(pledge(taking, sophisticated[0]))
    api.post(f"/v1/sandbox/payments/{contested}/dispute")
    give("POST /v1/sandbox/disputes/{id}/close", "path.id", "dp_" + contested.removeprefix("pay_"))

    # Offers whose minimum is funded, to close early.
    for _ in range(3):
        closable = offer()
        pay(pledge(closable, sophisticated[1]))
        give("POST /v1/offers/{id}/close", "path.id", closable)

    # Succeeded rounds with a pending payout (asking for it again answers the same payout).
    for _ in range(2):
        done = offer()
        pay(pledge(done, sophisticated[2], 3))
        closed = api.post(f"/v1/offers/{done}/close")
        if closed["status"] != "succeeded":
            raise Seeding(f"offer {done} closed as {closed['status']}, not succeeded")
        payout = api.post(f"/v1/offers/{done}/payouts", expect=(201,))
        give("GET /v1/offers/{id}/cap-table", "path.id", done)
        give("POST /v1/offers/{id}/payouts", "path.id", done)
        give("GET /v1/payouts/{id}", "path.id", payout["id"])
        give("POST /v1/sandbox/payouts/{id}/succeed", "path.id", payout["payment"]["payment_id"])

    # A sponsor with a budget far above any cheque, and active cheques.
    sponsor = api.post("/v1/sponsors", {"name": "Seed sponsor", "currency": "EUR"}, (201,))["id"]
    deposit = api.post(f"/v1/sponsors/{sponsor}/deposits", {"amount": "1000000000.00", "currency": "EUR"}, (201,))
    sent = api.post(f"/v1/sandbox/deposits/{deposit['payment']['payment_id']}/succeed")
    if sent.get("applied") is not True:
        raise Seeding(f"the sponsor's deposit was not applied: {sent}")
    # Deposits must be in the sponsor's currency (in its decimals), so the fuzzer's are given
    # this sponsor with its currency; its own sponsors have any of them.
    give("POST /v1/sponsors/{id}/deposits", "path.id", sponsor)
    give("POST /v1/sponsors/{id}/deposits", "body.currency", "EUR")
    give("POST /v1/sponsors/{id}/deposits", "body.amount", "100.00")
    # A pending deposit for the sandbox to confirm (a confirmed one answers too, changing nothing).
    waiting = api.post(f"/v1/sponsors/{sponsor}/deposits", {"amount": "100.00", "currency": "EUR"}, (201,))
    give("POST /v1/sandbox/deposits/{id}/succeed", "path.id", waiting["payment"]["payment_id"],
         deposit["payment"]["payment_id"])
    # Withdrawals: a small amount of the large budget, each answered 201; pending ones for the
    # sandbox to pay (a paid one answers too, changing nothing), and the sponsor's statement.
    give("POST /v1/sponsors/{id}/withdrawals", "path.id", sponsor)
    give("POST /v1/sponsors/{id}/withdrawals", "body.amount", "1.00")
    give("POST /v1/sponsors/{id}/withdrawals", "body.currency", "EUR")
    give("GET /v1/sponsors/{id}/withdrawals", "path.id", sponsor)
    give("GET /v1/sponsors/{id}/statement", "path.id", sponsor)
    for _ in range(2):
        w = api.post(f"/v1/sponsors/{sponsor}/withdrawals", {"amount": "1.00"}, (201,))
        give("GET /v1/withdrawals/{id}", "path.id", w["id"])
        give("POST /v1/sandbox/withdrawals/{id}/succeed", "path.id", w["payment"]["payment_id"])
    cheque = {"sponsor_id": sponsor, "beneficiary_name": "Awa Diallo", "beneficiary_email": "awa@example.org",
              "face_value": "10.00", "currency": "EUR", "expires_at": FAR}
    for _ in range(3):
        id = api.post("/v1/cheques", cheque, (201,))["id"]
        give("GET /v1/cheques/{id}", "path.id", id)
        give("POST /v1/cheques/{id}/cancel", "path.id", id)
    for field in ("sponsor_id", "beneficiary_name", "beneficiary_email", "face_value", "currency", "expires_at"):
        give("POST /v1/cheques", f"body.{field}", cheque[field])
    # Codes to look up (their cheques are not given to cancel; a cancelled one answers too), for
    # the seeded investors or none. Wrong codes the fuzzer sends block only their own scope.
    for _ in range(2):
        give("POST /v1/cheques/lookup", "body.code", api.post("/v1/cheques", cheque, (201,))["code"])
    give("POST /v1/cheques/lookup", "body.investor_id", *sophisticated)
    give("POST /v1/cheques", "body.eligible_project_ids[*]", project)
    # A matchfunding pool of the same sponsor, and the values a new one needs (its currency and
    # decimals, a ratio of at most 10, a future expiry).
    match_pool = {"amount": "100.00", "ratio": "1", "max_per_pledge": "10.00", "max_per_project": "50.00",
                  "expires_at": FAR}
    pool_id = api.post(f"/v1/sponsors/{sponsor}/match-pools", match_pool, (201,))["id"]
    give("GET /v1/sponsors/{id}/match-pools", "path.id", sponsor)
    give("POST /v1/sponsors/{id}/match-pools", "path.id", sponsor)
    for field, value in match_pool.items():
        give("POST /v1/sponsors/{id}/match-pools", f"body.{field}", value)
    give("POST /v1/sponsors/{id}/match-pools", "body.currency", "EUR")
    give("POST /v1/sponsors/{id}/match-pools", "body.eligible_project_ids[*]", project)
    give("GET /v1/match-pools/{id}", "path.id", pool_id)
    give("GET /v1/match-pools/{id}/matches", "path.id", pool_id)

    # Two manual accounts and entries between them.
    suffix = uuid.uuid4().hex[:8]
    accounts = [
        api.post("/v1/ledger/accounts", {"code": f"manual:seed-{kind}-{suffix}", "currency": "EUR", "kind": kind},
                 (201,))["id"]
        for kind in ("asset", "liability")
    ]
    for i in range(3):
        entry = api.post(
            "/v1/ledger/entries",
            {"reference": f"seed-{suffix}-{i}", "postings": [
                {"account_id": accounts[0], "side": "debit", "amount": "1.00", "currency": "EUR"},
                {"account_id": accounts[1], "side": "credit", "amount": "1.00", "currency": "EUR"},
            ]},
            (201,),
        )["id"]
        give("GET /v1/ledger/entries/{id}", "path.id", entry)
        give("POST /v1/ledger/entries/{id}/reverse", "path.id", entry)
    give("POST /v1/ledger/entries", "body.postings[*].account_id", *accounts)
    give("POST /v1/ledger/entries", "body.postings[*].currency", "EUR")
    give("POST /v1/ledger/entries", "body.postings[*].amount", "1.00")

    # The fan-out makes deliveries of the events above within a second or so.
    for endpoint in endpoints:
        for _ in range(100):
            deliveries = api.get(f"/v1/webhook-endpoints/{endpoint}/deliveries")["items"]
            if deliveries:
                give("POST /v1/webhook-deliveries/{id}/redeliver", "path.id", *(d["id"] for d in deliveries[:2]))
                break
            time.sleep(0.2)
        else:
            raise Seeding(f"no delivery for webhook endpoint {endpoint} after 20 s")
    return out


# How often a generated case takes a seeded value instead of its own. Path ids: half the time,
# so the other half still tries unknown ids (404), ids the fuzzer read from earlier answers, and
# the generator's own edge cases; a state-changing operation needs only one seeded call to
# succeed, the later ones answer 409 or replay. Body fields: mostly seeded, since a pledge, a
# cheque or an entry is accepted only when all its bound fields agree with the database at once.
# The coverage phase, which dictionaries do not touch, still sends every parameter's boundary,
# unknown and invalid values.
PATH_PROBABILITY = 0.5
BODY_PROBABILITY = 0.9
# Except for the operations that end an offer: with the ids the fuzzer reads from the lists they
# would cancel or close the offers seeded for the others (the one taking pledges, the one whose
# pledges are to be revoked) before those are fuzzed, so their positive cases take only the
# offers seeded for them. (Operations run phase by phase in the document's order.) And for the
# one that adds a document: a KIIS in French given to the offer taking pledges would amend it, and
# the pledges sent with the seeded hash would then be refused (kiis_not_acknowledged).
ALWAYS = {"POST /v1/offers/{id}/cancel", "POST /v1/offers/{id}/close", "POST /v1/offers/{id}/documents"}


def toml(seeded: dict[str, dict[str, list]]) -> str:
    """Schemathesis configuration binding each seeded parameter to a dictionary of its values.

    A dictionary bound to a parameter (rather than a fixed `parameters` value) replaces the
    generated value only with some probability, and only in positive cases of the phases that
    generate with Hypothesis (fuzzing, stateful), so unknown ids, invalid values and the coverage
    phase's edge cases are still sent to the same routes.
    """
    lines, blocks = [], []
    for n, (operation, parameters) in enumerate(sorted(seeded.items())):
        bindings = []
        for parameter, values in sorted(parameters.items()):
            name = f"seed-{n}-{parameter.replace('.', '-').replace('[*]', '')}"
            lines.append(f"[dictionaries.{json.dumps(name)}]\nvalues = {json.dumps(values)}\n")
            p = 1.0 if operation in ALWAYS else PATH_PROBABILITY if parameter.startswith("path.") else BODY_PROBABILITY
            bindings.append(f"{json.dumps(parameter)} = {{ dictionary = {json.dumps(name)}, probability = {p} }}")
        blocks.append(f"[[operations]]\ninclude-name = {json.dumps(operation)}\nparameters = {{ {', '.join(bindings)} }}\n")
    return "\n".join(lines + blocks)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--toml":
        with open(argv[1], encoding="utf-8") as f:
            print(toml(json.load(f)))
        return 0
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    base, key, path = argv
    try:
        seeded = seed(Api(base, key))
    except Seeding as e:
        print(f"schemathesis seed: {e}", file=sys.stderr)
        return 1
    with open(path, "w", encoding="utf-8") as f:
        json.dump(seeded, f, indent=1, sort_keys=True)
    print(f"schemathesis seed: ids for {len(seeded)} operations in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
