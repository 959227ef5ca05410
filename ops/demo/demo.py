#!/usr/bin/env python3
"""Tally's demo: a month of usage for sample tenants on every plan, billed end to end.

Run by `./ops/local.sh demo` once the stack is up and Examples/SampleAPI serves on
SAMPLE_API_URL; reads the stack's addresses from .local/env (exported). Every run
creates tenants of its own (their names carry the run's label), so it can run again
and again; what it made stays for the dashboard until `./ops/local.sh down`.

What it does, in order:
1. tenants on every plan, with a trial, an upgrade, a cancel and one on a plan whose
   `estimates` quota is hard;
2. a month of usage sent three ways: the ingest API (with each tenant's own key, one
   batch sent twice), `producer publish` of an NDJSON file (admin token), and live
   requests through the sample API server, whose Hummingbird MeteringMiddleware meters
   them — until the hard-quota tenant is refused with 429;
3. waits until the Aggregator counted exactly what was sent, per tenant and metric;
4. a billing run with progress (`invoicer bill`), then a late event for the canceled
   tenant and a second run, which issues its adjustment invoice;
5. waits for every invoice's emails, keeps their PDFs, and prints a summary.

Exit status 0 only when every check above held; otherwise the error says what to look at.
"""
import argparse
import datetime as dt
import email
import email.policy
import http.client
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from decimal import Decimal

ENV = os.environ
API = ENV.get("TALLY_API_URL", "")
INGEST = ENV.get("TALLY_INGEST_URL", "")
ADMIN = ENV.get("BILLING_ADMIN_TOKEN", "")
UTC = dt.timezone.utc
# Usage counted by `max` over the period (a seat count); every other metric here sums.
MAX_METRICS = {"users"}


class DemoError(Exception):
    pass


def say(text: str) -> None:
    print(f"\033[1m==>\033[0m {text}", flush=True)


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def request(method: str, url: str, body=None, token: str = ADMIN, content_type: str = "application/json",
            expect=(200, 201, 202)):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        payload, status = error.read(), error.code
    except urllib.error.URLError as error:
        raise DemoError(f"{method} {url}: {error.reason}; is the stack up (./ops/local.sh status)?")
    if status not in expect:
        raise DemoError(f"{method} {url} answered {status}: {payload.decode(errors='replace')[:500]}")
    return json.loads(payload) if payload else None


def api(method: str, path: str, body=None, token: str = ADMIN):
    return request(method, API + path, body, token)


def poll(what: str, seconds: float, check):
    """Calls check() until it returns a true value (then returns it), up to `seconds`;
    check() may return (False, progress-text) to say how far it got."""
    deadline = time.monotonic() + seconds
    last = None
    while True:
        result = check()
        done, progress = result if isinstance(result, tuple) else (result, None)
        if done:
            return done
        if progress and progress != last:
            print(f"    {what}: {progress}", flush=True)
            last = progress
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not happen within {int(seconds)} s ({progress or 'no progress'}); "
                            "see .local/log/aggregator.log, invoicer.log and notifier.log")
        time.sleep(0.5)


# ---------------------------------------------------------------- the tenants

class Tenant:
    def __init__(self, key: str, name: str, plan: str, sent_by: str, **options):
        self.key, self.name, self.plan, self.sent_by = key, name, plan, sent_by
        self.options = options
        self.id = self.api_key = self.subscription = None
        self.email = ""
        self.backfill = []        # events sent by the ingest API or producer publish
        self.live = {}            # metric -> quantity metered by the sample API
        self.story = []           # what happened to it, for the summary
        self.invoices = []


def tenants_of_this_run() -> list:
    return [
        Tenant("northwind", "Northwind Roofing", "starter", "ingest", tax_rate_bps=825, api_calls=1450,
               estimates=63, seats=(2, 4), story="Starter, over its api_calls, estimates and seats quotas (8.25 % tax)"),
        Tenant("bluebird", "Bluebird Clinics", "professional", "publish", api_calls=12400, estimates=185, seats=(6, 9),
               payment_provider="stripe", story="Professional, over its api_calls quota; invoices pushed to Stripe (localstripe)"),
        Tenant("atlas", "Atlas Freight", "enterprise", "ingest", api_calls=240000, estimates=4200, seats=(40, 55),
               story="Enterprise: Unlimited, no overage however much it uses; one batch sent twice, counted once"),
        Tenant("juniper", "Juniper Legal", "starter", "publish", trial_days=14, api_calls=900, estimates=40, seats=(1, 2),
               story="Starter after a 14-day trial: the trial's usage is recorded, never billed"),
        Tenant("cobalt", "Cobalt Analytics", "starter", "ingest", upgrade_day=12, api_calls=3100, estimates=120, seats=(3, 5),
               story="Upgraded Starter → Professional on day 12: two prorated base fees, the new plan's quotas for the month"),
        Tenant("pine", "Pine & Co Architects", "professional", "publish", cancel_day=20, api_calls=7000, estimates=198,
               seats=(4, 4), story="Professional, canceled on day 20: a shorter last period; a late event then bills an adjustment invoice"),
        Tenant("quarry", "Quarry Labs", "demo-capped", "publish", api_calls=700, estimates=42, seats=(2, 2),
               story="Starter with a hard estimates quota: the sample API answers 429 once it is used up"),
    ]


def create_tenants(tenants, label: str, start: dt.datetime) -> None:
    for tenant in tenants:
        tenant.email = f"billing+{tenant.key}-{label.lower().replace(' ', '-').replace(':', '')}@{tenant.key}.example"
        body = {"name": f"{tenant.name} ({label})", "billing_email": tenant.email,
                "tax_rate_bps": tenant.options.get("tax_rate_bps", 0)}
        if "payment_provider" in tenant.options:
            body["payment_provider"] = tenant.options["payment_provider"]
        created = api("POST", "/v1/tenants", body)
        tenant.id, tenant.api_key = created["id"], created["api_key"]
        trial = tenant.options.get("trial_days", 0)
        begins = start - dt.timedelta(days=trial)
        subscription = {"tenant_id": tenant.id, "plan": tenant.plan, "start": stamp(begins)}
        if trial:
            subscription["trial_days"] = trial
        tenant.subscription = api("POST", "/v1/subscriptions", subscription)["id"]
        if "upgrade_day" in tenant.options:
            at = start + dt.timedelta(days=tenant.options["upgrade_day"], hours=10)
            api("POST", f"/v1/subscriptions/{tenant.subscription}/change", {"plan": "professional", "at": stamp(at)})
            tenant.story.append(f"upgraded to professional at {stamp(at)}")
        if "cancel_day" in tenant.options:
            at = start + dt.timedelta(days=tenant.options["cancel_day"], hours=17)
            api("POST", f"/v1/subscriptions/{tenant.subscription}/cancel", {"at": stamp(at)})
            tenant.options["ends"] = at
            tenant.story.append(f"canceled at {stamp(at)}")
        print(f"    {tenant.name:<22} {tenant.plan:<13} {tenant.id}", flush=True)


# ---------------------------------------------------------------- a month of usage

def weighted_times(rng: random.Random, begin: dt.datetime, end: dt.datetime, count: int) -> list:
    """`count` instants in [begin, end), busier on weekdays and in business hours (UTC)."""
    hours = []
    moment = begin.replace(minute=0, second=0, microsecond=0)
    while moment < end:
        weight = (1.0 if moment.weekday() < 5 else 0.25) * (1.0 if 8 <= moment.hour < 19 else 0.15)
        hours.append((moment, weight))
        moment += dt.timedelta(hours=1)
    chosen = rng.choices([h for h, _ in hours], weights=[w for _, w in hours], k=count)
    times = []
    for hour in chosen:
        instant = hour + dt.timedelta(seconds=rng.uniform(0, 3600))
        times.append(min(max(instant, begin), end - dt.timedelta(milliseconds=1)))
    return sorted(times)


def split(total: int, parts: int, rng: random.Random) -> list:
    """`total` as `parts` positive integers (api calls metered per minute, say)."""
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def generate_usage(tenant: Tenant, begin: dt.datetime, end: dt.datetime, rng: random.Random) -> None:
    """The tenant's month in [begin, end): api_calls in per-minute counts, estimates one by
    one, a monthly report (documents), and the seat count (users, a gauge) every day."""
    if "ends" in tenant.options:
        end = min(end, tenant.options["ends"])
    events = []

    def add(metric: str, quantity, at: dt.datetime, name: str, metadata=None) -> None:
        event = {"id": f"demo-{uuid.uuid4()}", "type": metric, "quantity": str(quantity), "time": stamp(at), "name": name}
        if metadata:
            event["metadata"] = metadata
        events.append(event)

    calls = tenant.options["api_calls"]
    parts = min(calls, max(1, calls // 40), 3000)
    for at, quantity in zip(weighted_times(rng, begin, end, parts), split(calls, parts, rng)):
        add("api_calls", quantity, at, "GET /estimates/:id", {"endpoint": "/estimates/:id", "method": "GET"})
    for at in weighted_times(rng, begin, end, tenant.options["estimates"]):
        add("estimates", 1, at, "POST /estimates", {"endpoint": "/estimates"})
    for at in weighted_times(rng, begin, end, 3):
        add("documents", 1, at, "monthly report", {"report": "monthly"})
    low, high = tenant.options["seats"]
    day = begin
    seats = low
    # Counted at 09:00 each day up to `end`: before 09:00, today's count is not in yet (an
    # event at 09:00 today would be in the future, and the ingest API refuses it).
    while day + dt.timedelta(hours=9) < end:
        seats = min(high, max(seats, low + (high - low) * (day - begin).days // 25))
        add("users", seats, day + dt.timedelta(hours=9), "seat count")
        day += dt.timedelta(days=1)
    tenant.backfill = sorted(events, key=lambda event: event["time"])


def expected_totals(events) -> dict:
    totals = {}
    for event in events:
        quantity = Decimal(event["quantity"])
        if event["type"] in MAX_METRICS:
            totals[event["type"]] = max(totals.get(event["type"], Decimal(0)), quantity)
        else:
            totals[event["type"]] = totals.get(event["type"], Decimal(0)) + quantity
    return totals


def send_by_ingest(tenant: Tenant) -> int:
    """POST /v1/events with the tenant's own key, 1,000 events per NDJSON request."""
    batches = [tenant.backfill[i:i + 1000] for i in range(0, len(tenant.backfill), 1000)]
    for batch in batches:
        body = "\n".join(json.dumps(event) for event in batch).encode()
        accepted = request("POST", INGEST + "/v1/events", body, tenant.api_key, "application/x-ndjson")
        if accepted.get("accepted") != len(batch):
            raise DemoError(f"ingest accepted {accepted} of {len(batch)} events for {tenant.name}")
    if tenant.key == "atlas":
        # A client that retries a batch it already sent: the same ids, counted once.
        body = "\n".join(json.dumps(event) for event in batches[0]).encode()
        request("POST", INGEST + "/v1/events", body, tenant.api_key, "application/x-ndjson")
        tenant.story.append(f"resent a batch of {len(batches[0])} events it had already sent: counted once")
    return len(batches)


def send_by_publish(tenants, path: str) -> None:
    with open(path, "w") as file:
        for tenant in tenants:
            for event in tenant.backfill:
                file.write(json.dumps({**event, "tenant_id": tenant.id}) + "\n")
    producer = os.path.join(ENV["TALLY_BIN_DIR"], "producer")
    result = subprocess.run([producer, "publish", path], capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoError(f"producer publish {path} failed:\n{result.stdout}{result.stderr}")
    for line in (result.stdout + result.stderr).strip().splitlines()[-2:]:
        print(f"    producer publish: {line}", flush=True)


# ---------------------------------------------------------------- the sample API server

class SampleAPI:
    def __init__(self, url: str):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def call(self, method: str, path: str, tenant: Tenant):
        for attempt in range(2):
            try:
                self.connection.request(method, path, headers={"X-Tenant-ID": tenant.id, "Content-Length": "0"})
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 1:
                    raise DemoError(f"the sample API on {self.host}:{self.port} stopped answering; see .local/log/sample-api.log")

    def meter(self, tenant: Tenant, status: int, creation: str = None) -> None:
        # The middleware meters every answered request as api_calls, and a 201 on /estimates as estimates.
        tenant.live["api_calls"] = tenant.live.get("api_calls", 0) + 1
        if creation and status == 201:
            tenant.live[creation] = tenant.live.get(creation, 0) + 1


def load_loop(sample: SampleAPI, tenants, rng: random.Random) -> None:
    """What each tenant's users do on the sample API right now (the open period)."""
    for tenant in tenants:
        if "ends" in tenant.options or tenant.plan == "demo-capped":
            continue
        for _ in range(rng.randint(25, 60)):
            roll = rng.random()
            if roll < 0.2:
                status, _ = sample.call("POST", "/estimates", tenant)
                sample.meter(tenant, status, "estimates")
            elif roll < 0.25:
                status, _ = sample.call("GET", "/reports", tenant)
                sample.meter(tenant, status)
                tenant.live["documents"] = tenant.live.get("documents", 0) + 1
            else:
                status, _ = sample.call("GET", f"/estimates/{rng.randint(1, 9999)}", tenant)
                sample.meter(tenant, status)
            if status >= 400:
                raise DemoError(f"the sample API answered {status} for {tenant.name}; see .local/log/sample-api.log")


def exhaust_quota(sample: SampleAPI, tenant: Tenant, quota: int) -> None:
    """Creates estimates through the sample API until the middleware refuses with 429."""
    created = refused = 0
    refusal = None
    deadline = time.monotonic() + 120
    while refused < 3:
        status, body = sample.call("POST", "/estimates", tenant)
        if status == 201:
            created += 1
            sample.meter(tenant, status, "estimates")
        elif status == 429:
            refused += 1
            refusal = json.loads(body)["error"] if refused == 1 else refusal
        else:
            raise DemoError(f"the sample API answered {status} to {tenant.name}'s estimate: {body[:300]!r}")
        if time.monotonic() > deadline:
            raise DemoError(f"{tenant.name} created {created} estimates and was never refused; "
                            "see .local/log/aggregator.log and sample-api.log")
        if created % 10 == 0 and status == 201:
            print(f"    {tenant.name}: {created} estimates created through the sample API", flush=True)
        time.sleep(0.05)
    used, allowed = Decimal(refusal["usage"]), Decimal(refusal["quota"])
    over = (f"; the {used - allowed} past the quota passed before the Aggregator's broadcast reached the server "
            "and are billed as overage") if used > allowed else ""
    tenant.story.append(
        f"created {created} estimates through the sample API this period, then was refused: "
        f"429 {refusal['code']}, estimates {refusal['usage']} of {refusal['quota']}{over}")


# ---------------------------------------------------------------- counting and billing

def counted(tenant: Tenant, begin: dt.datetime, end: dt.datetime) -> dict:
    query = urllib.parse.urlencode({"tenant_id": tenant.id, "from": stamp(begin), "to": stamp(end)})
    usage = api("GET", f"/v1/usage?{query}")
    return {m["metric"]: Decimal(m["value"]) for m in usage["metrics"] if Decimal(m["value"]) != 0}


def wait_until_counted(tenants, begin: dt.datetime, cut: dt.datetime, now_end: dt.datetime) -> None:
    def check():
        done = 0
        for tenant in tenants:
            history = counted(tenant, begin, cut) == expected_totals(tenant.backfill)
            live = {k: Decimal(v) for k, v in tenant.live.items()}
            live_ok = counted(tenant, cut, now_end) == live
            done += history and live_ok
        return (done == len(tenants), f"{done} of {len(tenants)} tenants counted exactly")
    poll("counting", 240, check)


def bill(tenants, as_of: dt.datetime) -> None:
    invoicer = os.path.join(ENV["TALLY_BIN_DIR"], "invoicer")
    arguments = [invoicer, "bill", "--as-of", stamp(as_of)]
    for tenant in tenants:
        arguments += ["--tenant", tenant.id]
    print(f"    $ invoicer bill --as-of {stamp(as_of)} --tenant … ({len(tenants)} tenants)", flush=True)
    if subprocess.run(arguments).returncode != 0:
        raise DemoError("the billing run failed; see .local/log/invoicer.log")


def invoices_of(tenant: Tenant) -> list:
    page = api("GET", f"/v1/invoices?tenant_id={tenant.id}&limit=100")
    return sorted(page["data"], key=lambda invoice: invoice["number"])


def mail_with(subjects_containing: str, mail_dir: str, since_ns: int) -> list:
    found = []
    for name in sorted(os.listdir(mail_dir)):
        if not name.endswith(".eml") or int(name.split("-")[0]) < since_ns:
            continue
        path = os.path.join(mail_dir, name)
        with open(path, "rb") as file:
            message = email.message_from_binary_file(file, policy=email.policy.default)
        if subjects_containing in str(message["Subject"]):
            found.append((path, message))
    return found


def collect_emails(tenants, mail_dir: str, since_ns: int, pdf_dir: str) -> None:
    wanted = [(tenant, invoice) for tenant in tenants for invoice in tenant.invoices]

    def check():
        ready = sum(len(mail_with(invoice["number"], mail_dir, since_ns)) >= 2 for _, invoice in wanted)
        return (ready == len(wanted), f"{ready} of {len(wanted)} invoices emailed to the tenant and to finance")
    poll("emails", 240, check)
    os.makedirs(pdf_dir, exist_ok=True)
    for tenant, invoice in wanted:
        invoice["emails"] = []
        for path, message in mail_with(invoice["number"], mail_dir, since_ns):
            invoice["emails"].append((path, message["To"]))
            for part in message.iter_attachments():
                if part.get_content_type() == "application/pdf":
                    target = os.path.join(pdf_dir, part.get_filename())
                    with open(target, "wb") as file:
                        file.write(part.get_content())
                    invoice["pdf"] = target
        if "pdf" not in invoice:
            raise DemoError(f"the email of {invoice['number']} has no PDF attached")


def stripe_invoice(tenant: Tenant):
    base, key = ENV.get("STRIPE_API_BASE"), ENV.get("STRIPE_API_KEY")
    if not base or not key:
        return None

    def check():
        customers = request("GET", f"{base}/v1/customers?" + urllib.parse.urlencode({"email": tenant.email}), token=key)
        for customer in customers.get("data", []):
            listed = request("GET", f"{base}/v1/invoices?customer={customer['id']}", token=key)
            for invoice in listed.get("data", []):
                if invoice.get("metadata", {}).get("tally_number") == tenant.invoices[0]["number"]:
                    if invoice.get("total") != tenant.invoices[0]["total_cents"]:
                        raise DemoError(f"Stripe's {invoice['id']} totals {invoice.get('total')} cents, "
                                        f"Tally's {tenant.invoices[0]['number']} {tenant.invoices[0]['total_cents']}")
                    return invoice
        return (False, "waiting for the Invoicer's push to Stripe")
    return poll("Stripe push", 120, check)


# ---------------------------------------------------------------- the summary

def summary(tenants, run_dir: str, urls: dict) -> None:
    print()
    say("what was billed")
    for tenant in tenants:
        print(f"\n  {tenant.name} — {tenant.options['story']}")
        for line in tenant.story:
            print(f"    · {line}")
        if not tenant.invoices:
            print("    no invoice yet")
        for invoice in tenant.invoices:
            kind = "adjustment invoice" if invoice.get("kind") == "adjustment" else "invoice"
            print(f"    {invoice['number']}  {kind}, period {invoice['period_start'][:10]} → {invoice['period_end'][:10]}")
            rows = [(line["description"], line["quantity"], money(line["amount_cents"])) for line in invoice["lines"]]
            if invoice["tax_cents"]:
                rows.append((f"Tax ({Decimal(invoice['tax_rate_bps']) / 100} %)", "", money(invoice["tax_cents"])))
            rows.append(("Total", "", money(invoice["total_cents"])))
            width = max(len(row[0]) for row in rows)
            for description, quantity, amount in rows:
                print(f"      {description:<{width}} {quantity:>7} {amount:>11}")
            print(f"      PDF:    {os.path.relpath(invoice['pdf'], urls['root'])}")
            for path, to in invoice["emails"]:
                print(f"      email:  {os.path.relpath(path, urls['root'])}  (to {to})")
            if invoice.get("stripe"):
                pushed = invoice["stripe"]
                print(f"      Stripe: {pushed['id']} in localstripe, total {money(pushed['total'])} (ours to the cent), "
                      f"status {pushed['status']} (localstripe cannot finalize)")
    print()
    say("where to look")
    signer = next(t for t in tenants if t.key == "northwind")
    print(f"  dashboard:  {urls['api']}/dashboard")
    print(f"              sign in as {signer.name} with its API key {signer.api_key}")
    print(f"              or with the admin token (in .local/env, BILLING_ADMIN_TOKEN) for finance's tenant list")
    print("  metrics:    " + "\n              ".join(f"{url}/metrics  ({name})" for name, url in urls["metrics"]))
    if ENV.get("TALLY_PROMETHEUS_URL"):
        print(f"  Prometheus: {ENV['TALLY_PROMETHEUS_URL']}/alerts (ops/prometheus/; Grafana dashboard ops/grafana/tally-dashboard.json)")
    print(f"  emails:     {os.path.relpath(urls['mail'], urls['root'])}/ (one .eml per message)")
    print(f"  this run:   {os.path.relpath(run_dir, urls['root'])}/ (usage.ndjson, invoices/*.pdf, summary.json)")
    print(f"  stop it:    ./ops/local.sh down")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the checkout (for paths in the summary)")
    parser.add_argument("--sample-api", required=True, help="URL of the running Examples/SampleAPI server")
    parser.add_argument("--seed", type=int, help="random seed of the generated usage (default: from the clock)")
    args = parser.parse_args()
    for name in ("TALLY_API_URL", "TALLY_INGEST_URL", "BILLING_ADMIN_TOKEN", "MAIL_SINK_DIR", "TALLY_BIN_DIR"):
        if not ENV.get(name):
            raise DemoError(f"{name} is not set: run the demo through ./ops/local.sh demo")

    started_ns = time.time_ns()
    now = dt.datetime.now(UTC)
    label = "demo " + now.strftime("%b %d %H:%M:%S")
    run_dir = os.path.join(ENV.get("TALLY_LOCAL_DIR") or os.path.join(args.root, ".local"), "demo", now.strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(run_dir, exist_ok=True)
    rng = random.Random(args.seed if args.seed is not None else started_ns)
    # The month: subscriptions start 33 days ago at midnight UTC, so their first monthly
    # period ended days ago (past the 1-hour grace) and the second one is open now.
    start = (now - dt.timedelta(days=33)).replace(hour=0, minute=0, second=0, microsecond=0)
    cut = now - dt.timedelta(minutes=10)

    say(f"creating this run's tenants ({label}); subscriptions start {stamp(start)}")
    tenants = tenants_of_this_run()
    create_tenants(tenants, label, start)

    say("generating a month of usage (weekdays and business hours busier)")
    for tenant in tenants:
        begin = start - dt.timedelta(days=tenant.options.get("trial_days", 0))
        generate_usage(tenant, begin, cut, rng)
        if tenant.options.get("trial_days"):
            trial_calls = sum(Decimal(e["quantity"]) for e in tenant.backfill if e["type"] == "api_calls" and parse_time(e["time"]) < start)
            tenant.story.append(f"{trial_calls} api_calls during its trial: recorded, not billed")
    total = sum(len(t.backfill) for t in tenants)
    print(f"    {total:,} events over {len(tenants)} tenants", flush=True)

    by_ingest = [t for t in tenants if t.sent_by == "ingest"]
    say(f"sending {sum(len(t.backfill) for t in by_ingest):,} events through the ingest API ({INGEST}/v1/events, each tenant's own key)")
    for tenant in by_ingest:
        batches = send_by_ingest(tenant)
        print(f"    {tenant.name}: {len(tenant.backfill):,} events in {batches} request(s)", flush=True)
    by_publish = [t for t in tenants if t.sent_by == "publish"]
    usage_file = os.path.join(run_dir, "usage.ndjson")
    say(f"sending {sum(len(t.backfill) for t in by_publish):,} events with `producer publish {os.path.relpath(usage_file, args.root)}`")
    send_by_publish(by_publish, usage_file)

    say(f"calling the sample API server ({args.sample_api}, Examples/SampleAPI) as the tenants' users would")
    sample = SampleAPI(args.sample_api)
    load_loop(sample, tenants, rng)
    live = sum(sum(t.live.values()) for t in tenants)
    print(f"    {live} usage units metered by its MeteringMiddleware and track()", flush=True)
    quarry = next(t for t in tenants if t.key == "quarry")
    exhaust_quota(sample, quarry, 50)

    say("waiting until the Aggregator has counted every event exactly once")
    wait_until_counted(tenants, start - dt.timedelta(days=30), cut, dt.datetime.now(UTC) + dt.timedelta(minutes=5))
    print("    every tenant's usage equals what was sent, per metric (duplicates counted once)", flush=True)

    say("billing run: every invoice due now for this run's tenants")
    bill(tenants, dt.datetime.now(UTC))
    for tenant in tenants:
        tenant.invoices = invoices_of(tenant)
        if not tenant.invoices:
            raise DemoError(f"{tenant.name} got no invoice; see .local/log/invoicer.log")

    pine = next(t for t in tenants if t.key == "pine")
    late_at = start + dt.timedelta(days=9, hours=15)
    say(f"a late event: {pine.name} reports 7 estimates of {stamp(late_at)}, after its last period was invoiced")
    late = {"id": f"demo-late-{uuid.uuid4()}", "tenant_id": pine.id, "type": "estimates", "quantity": "7",
            "time": stamp(late_at), "name": "POST /estimates (late)"}
    request("POST", INGEST + "/v1/events", json.dumps(late).encode(), ADMIN)
    pine.backfill.append(late)
    wait_until_counted([pine], start - dt.timedelta(days=30), cut, dt.datetime.now(UTC) + dt.timedelta(minutes=5))
    say("second billing run: the late usage of the canceled subscription")
    bill([pine], dt.datetime.now(UTC))
    pine.invoices = invoices_of(pine)
    if len(pine.invoices) != 2 or pine.invoices[1]["kind"] != "adjustment":
        raise DemoError(f"{pine.name} should have an adjustment invoice for its late event; it has {len(pine.invoices)} invoice(s)")

    say("waiting for the Notifier's emails (the tenant and finance, each with the PDF)")
    collect_emails(tenants, ENV["MAIL_SINK_DIR"], started_ns, os.path.join(run_dir, "invoices"))
    bluebird = next(t for t in tenants if t.key == "bluebird")
    say(f"looking for {bluebird.name}'s invoice in Stripe (localstripe)")
    pushed = stripe_invoice(bluebird)
    if pushed:
        bluebird.invoices[0]["stripe"] = pushed

    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump([{"name": t.name, "tenant_id": t.id, "plan": t.plan, "invoices": t.invoices,
                    "story": t.story} for t in tenants], file, indent=2, default=str)
    urls = {"root": args.root, "api": API, "mail": ENV["MAIL_SINK_DIR"],
            "metrics": [(name, ENV[key]) for name, key in (
                ("producer", "TALLY_INGEST_URL"), ("aggregator", "TALLY_AGGREGATOR_URL"), ("invoicer", "TALLY_INVOICER_URL"),
                ("notifier", "TALLY_NOTIFIER_URL"), ("billing-api", "TALLY_API_URL")) if ENV.get(key)]}
    summary(tenants, run_dir, urls)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DemoError as error:
        print(f"demo failed: {error}", file=sys.stderr)
        sys.exit(1)
