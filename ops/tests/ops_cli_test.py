#!/usr/bin/env python3
"""The ops commands, run as ops run them against the running stack (needs .local/env
exported and the debug build):

- every one answers --help; `PROCESS config` passes the stack's settings and names a value
  the process would refuse;
- `invoicer dlq`: a command the Invoicer cannot read is parked with its reason; list and
  show find it, replay puts it back (it parks again), and purge --yes empties the lot;
- `invoicer bill --rerun RUN`: a run whose invoice failed is billed again at its as_of, its
  failed item marked skipped, and a second re-run finds nothing to do;
- `notifier resend INVOICE --to finance`: one more email to finance with the PDF, and none
  to the tenant;
- `producer backfill FILE`: the dedup report counts the new, the counted, the repeated and
  the unreadable lines exactly; --dry-run sends nothing; the real run sends only the new
  events, and exits 1 for the unreadable line.
"""
import datetime as dt
import email
import email.policy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

import pika

from stack import ENV, LOCAL_SH, ROOT, Failure, counted, new_tenant, psql, require, stamp, wait
from stack import admin as api

BIN = os.path.join(ROOT, ".build", ENV.get("TALLY_BUILD_CONFIG", "debug"))


def log(text):
    print(f"ops CLI test: {text}", flush=True)


def tool(*arguments, expect=0, timeout=300, env=None):
    result = subprocess.run([os.path.join(BIN, arguments[0])] + list(arguments[1:]), capture_output=True, text=True, timeout=timeout,
                            env=None if env is None else {**os.environ, **env})
    if expect is not None and result.returncode != expect:
        raise Failure(f"{' '.join(arguments)} exited {result.returncode} (expected {expect}):\n{result.stdout}\n{result.stderr}")
    return result


def helps():
    for command in [("aggregator", "dlq"), ("notifier", "dlq"), ("notifier", "resend"), ("invoicer", "dlq"), ("invoicer", "bill"),
                    ("producer", "backfill"), ("producer", "publish")]:
        text = tool(*command, "--help").stdout
        if "USAGE:" not in text:
            raise Failure(f"{' '.join(command)} --help shows no usage:\n{text}")
    if "--rerun" not in tool("invoicer", "bill", "--help").stdout:
        raise Failure("invoicer bill --help does not mention --rerun")
    log("every ops command answers --help")


def configs():
    for process in ["producer", "aggregator", "invoicer", "notifier", "billing-api"]:
        if "configuration OK" not in tool(process, "config").stdout:
            raise Failure(f"{process} config does not pass the stack's own configuration")
    # Values the process would refuse at start, not only missing ones (these passed before).
    for process, name, value in [("aggregator", "AGGREGATOR_PREFETCH", "abc"), ("producer", "LOG_LEVEL", "loud"),
                                 ("invoicer", "DATABASE_URL", "mysql://u:secret-pw@db/tally"),
                                 ("notifier", "NOTIFIER_RETRY_DELAYS", "9999999999999999h")]:  # crashed on the overflow
        refused = tool(process, "config", expect=1, env={name: value})
        if f"{name} is invalid" not in refused.stderr or "secret-pw" in refused.stderr + refused.stdout:
            raise Failure(f"{process} config with {name}={value} should fail naming it (and no secret):\n{refused.stderr}")
    # Read lazily by the servers (the first dated request ended the process); 1e30 passed and
    # trapped converting the first timestamp.
    for value in ["abc", "1e30"]:
        refused = tool("billing-api", "config", expect=1, env={"TALLY_CLOCK_OFFSET": value})
        if f"TALLY_CLOCK_OFFSET={value} is invalid" not in refused.stderr:
            raise Failure(f"billing-api config with TALLY_CLOCK_OFFSET={value} should fail naming it:\n{refused.stderr}")
    if "TALLY_CLOCK_OFFSET" not in tool("aggregator", "config").stdout:
        raise Failure("aggregator config does not show TALLY_CLOCK_OFFSET")
    log("every process's config passes the stack's settings and refuses a value the process would refuse, naming it")


def refusals():
    """Typos an operator makes: each is refused naming what is wrong, not done as nothing (exit 0)."""
    missing_spool = os.path.join(tempfile.mkdtemp(), "no-such-spool")
    cases = [
        (("billing-api", "serve", "--port", "70000"), 64, "--port must be 0 to 65535"),  # listened on 4464
        (("aggregator", "dlq", "list", "--limit=-1"), 64, "--limit must be at least 1"),  # a raw SQL error
        (("producer", "publish", "/dev/null", "--batch-size", "10001"), 64, "--batch-size must be 1 to 10000"),  # every batch a 413
        (("invoicer", "bill", "--tenant", "11111111-2222-3333-4444-555555555555", "--no-wait"), 1, "no tenant 11111111-2222-3333-4444-555555555555"),
        (("invoicer", "stripe", "retry", "--invoice", "INV-1999-999999"), 1, "no invoice INV-1999-999999"),
        (("invoicer", "stripe", "retry", "--invoice", "x", "--events"), 64, "give one of them"),
        (("producer", "spool", "dead-letter", "list", "--spool", missing_spool), 1, "no spool folder"),  # created it, said 0
        (("producer", "spool", "dead-letter", "replay", "--spool", ENV["TALLY_SPOOL_DIR"], "--id", "no-such-letter"), 1, "no dead letter no-such-letter"),
        (("producer", "spool", "dead-letter", "purge", "--yes", "--spool", ENV["TALLY_SPOOL_DIR"], "--id", "no-such-letter"), 1,
         "no dead letter no-such-letter"),
    ]
    for arguments, code, text in cases:
        result = tool(*arguments, expect=code, timeout=60)
        if text not in result.stderr + result.stdout:
            raise Failure(f"{' '.join(arguments)} should say {text!r}:\n{result.stdout}\n{result.stderr}")
    if os.path.exists(missing_spool):
        raise Failure("producer spool dead-letter list created the mistyped spool folder")
    log(f"{len(cases)} operator typos refused, each naming what is wrong")


def unreachable():
    """A server that cannot be reached is named with the setting that points at it (it was
    the client's error value: `Error: PostgresError(connectionFailed: …)`), never its password."""
    database = "postgresql://tally:secret-pw@127.0.0.1:1/tally"
    broker = "amqp://guest:secret-pw@127.0.0.1:1/%2F"
    cases = [
        (("aggregator", "partitions", "list"), {"DATABASE_URL": database}, "cannot connect to PostgreSQL", "DATABASE_URL"),
        (("invoicer", "bill", "--no-wait"), {"DATABASE_URL": database}, "cannot connect to PostgreSQL", "DATABASE_URL"),
        (("aggregator", "dlq", "list"), {"AMQP_URL": broker}, "cannot connect to RabbitMQ", "AMQP_URL"),
        (("notifier", "dlq", "list"), {"AMQP_URL": broker}, "cannot connect to RabbitMQ", "AMQP_URL"),
    ]
    for arguments, env, what, setting in cases:
        result = tool(*arguments, expect=1, timeout=120, env=env)
        said = result.stderr + result.stdout
        if what not in said or setting not in said or "secret-pw" in said:
            raise Failure(f"{' '.join(arguments)} with {setting} on a closed port should say {what!r} naming {setting}:\n{said}")
    log(f"{len(cases)} commands facing an unreachable server name the setting to check")


def parked_commands():
    text = tool("invoicer", "dlq", "list").stdout
    return int(re.search(r"parked commands in invoicer\.commands\.parked: (\d+)", text).group(1)), text


def invoicer_dlq():
    tool("invoicer", "dlq", "purge", "--yes")
    message_id = f"ops-test-{uuid.uuid4()}"
    url = ENV["AMQP_URL"].split(",")[0]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("", "invoicer.commands", b'{"not": "an invoice.generate command"}',
                          pika.BasicProperties(message_id=message_id, delivery_mode=2, content_type="application/json"), mandatory=True)
    connection.close()
    count, text = wait("the unreadable command parked", 60, lambda: (lambda r: r if r[0] == 1 else None)(parked_commands()))
    if message_id not in text:
        raise Failure(f"invoicer dlq list does not show {message_id}:\n{text}")
    shown = tool("invoicer", "dlq", "show", message_id).stdout
    if "reason:" not in shown or "not an invoice.generate command" not in shown:
        raise Failure(f"invoicer dlq show lacks the reason or the body:\n{shown}")
    # Without --yes, purge refuses (a usage error) and drops nothing.
    tool("invoicer", "dlq", "purge", expect=64)
    replayed = tool("invoicer", "dlq", "replay").stdout
    if "replayed 1 parked command" not in replayed:
        raise Failure(f"invoicer dlq replay: {replayed}")
    # Still unreadable: the Invoicer parks it again.
    wait("the replayed command parked again", 60, lambda: parked_commands()[0] == 1)
    if "purged 1 parked command" not in tool("invoicer", "dlq", "purge", "--yes").stdout:
        raise Failure("invoicer dlq purge --yes did not purge the command")
    if parked_commands()[0] != 0:
        raise Failure("the parking lot is not empty after purge")
    log("invoicer dlq: parked with its reason, listed, shown, replayed (parked again), purged")


def rerun():
    tenant = new_tenant("Ops CLI test", f"ops-{uuid.uuid4().hex[:8]}@test.invalid")
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)
    api("POST", "/v1/subscriptions", {"tenant_id": tenant, "plan": "starter", "start": stamp(start)})
    subprocess.run([LOCAL_SH, "stop", "invoicer"], check=True, capture_output=True)
    try:
        planned = tool("invoicer", "bill", "--no-wait", "--tenant", tenant).stdout
        run = re.search(r"billing run ([0-9a-f-]{36}): 1 invoice", planned)
        if not run:
            raise Failure(f"invoicer bill planned no invoice for the tenant:\n{planned}")
        run = run.group(1)
        # The command is lost and its item failed, as after a command parked for good.
        subprocess.run([ENV["TALLY_RABBITMQCTL"], "-q", "purge_queue", "invoicer.commands"], check=True, capture_output=True)
        psql(f"UPDATE billing_run_items SET status = 'failed', error = 'ops CLI test: command lost' WHERE billing_run_id = '{run}'")
    finally:
        subprocess.run([LOCAL_SH, "start", "invoicer"], check=True, capture_output=True)
    again = tool("invoicer", "bill", "--rerun", run).stdout
    if "re-running billing run" not in again or "completed" not in again:
        raise Failure(f"invoicer bill --rerun did not re-run and complete:\n{again}")
    invoices = api("GET", f"/v1/invoices?tenant_id={tenant}")["data"]
    if len(invoices) != 1:
        raise Failure(f"the re-run should issue the tenant's one invoice; it has {len(invoices)}")
    status, error = psql(f"SELECT status, error FROM billing_run_items WHERE billing_run_id = '{run}'").split("|")
    if status != "skipped" or "superseded by billing run" not in error:
        raise Failure(f"the failed item should be skipped as superseded: {status} {error}")
    if "nothing to re-run" not in tool("invoicer", "bill", "--rerun", run).stdout:
        raise Failure("a second --rerun should find nothing to re-run")
    tool("invoicer", "bill", "--rerun", str(uuid.uuid4()), expect=1)  # no such run: a failure, not a usage error
    log(f"invoicer bill --rerun: the failed invoice issued ({invoices[0]['number']}), the old item superseded, nothing left to re-run")
    return invoices[0]


def emails_with(number, since):
    found = []
    directory = ENV["MAIL_SINK_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".eml") and int(name.split("-")[0]) >= since:
            with open(os.path.join(directory, name), "rb") as file:
                message = email.message_from_binary_file(file, policy=email.policy.default)
            if number in str(message["Subject"]):
                found.append(message)
    return found


def resend(invoice):
    number = invoice["number"]
    wait("the invoice's first two emails", 120, lambda: len(emails_with(number, 0)) >= 2)
    since = time.time_ns()
    sent = tool("notifier", "resend", number, "--to", "finance").stdout
    if "sent to " + ENV["FINANCE_EMAIL"] not in sent:
        raise Failure(f"notifier resend did not report the email to finance:\n{sent}")
    fresh = wait("the resent email in the sink", 60, lambda: emails_with(number, since))
    time.sleep(1)  # a second email, wrongly sent, would land within this second too
    fresh = emails_with(number, since)
    if len(fresh) != 1 or ENV["FINANCE_EMAIL"] not in str(fresh[0]["To"]):
        raise Failure(f"expected one new email, to finance; got {[str(m['To']) for m in fresh]}")
    if not any(part.get_content_type() == "application/pdf" for part in fresh[0].iter_attachments()):
        raise Failure("the resent email has no PDF")
    # An address no retry can fix (one stored before the API checked them): the Notifier parks
    # the resend at once, and resend says so and exits 1, instead of printing "not sent yet"
    # four times a second for two minutes.
    tenant = invoice["tenant_id"]
    original = psql(f"SELECT billing_email FROM tenants WHERE id = '{tenant}'")
    psql(f"UPDATE tenants SET billing_email = '<broken@test.invalid' WHERE id = '{tenant}'")
    try:
        refused = tool("notifier", "resend", number, "--to", "tenant", expect=1)
    finally:
        psql(f"UPDATE tenants SET billing_email = '{original}' WHERE id = '{tenant}'")
    if "the Notifier parked it" not in refused.stderr or refused.stdout.count("not sent yet") > 2:
        raise Failure(f"notifier resend to an unsendable address should end on the parked event:\n{refused.stdout}\n{refused.stderr}")
    event = re.search(r"event (\S+)\)", refused.stdout).group(1)
    tool("notifier", "dlq", "purge", "--id", event, "--yes")
    # A number typed in lower case names the same invoice (it was "no invoice").
    if "queued for the Notifier" not in tool("notifier", "resend", number.lower(), "--to", "finance", "--no-wait").stdout:
        raise Failure(f"notifier resend {number.lower()} should queue the invoice's email")
    tool("notifier", "resend", number, "--to", "everyone", expect=64)
    tool("notifier", "resend", "INV-1999-000001", "--no-wait", expect=1)  # no such invoice
    log(f"notifier resend {number} --to finance: one more email with the PDF, to finance only")


def backfill():
    tenant = new_tenant("Backfill test", "backfill@test.invalid")
    moment = stamp(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))

    def event(n):
        return json.dumps({"id": f"backfill-{tenant}-{n}", "tenant_id": tenant, "type": "api_calls", "quantity": 1, "time": moment})
    with tempfile.TemporaryDirectory() as directory:
        first = os.path.join(directory, "first.ndjson")
        with open(first, "w") as file:
            file.write("\n".join(event(n) for n in range(3)) + "\n")
        tool("producer", "publish", first)

        wait("the first 3 events counted", 60, lambda: counted(tenant) == 3)
        second = os.path.join(directory, "second.ndjson")
        with open(second, "w") as file:
            file.write("\n".join([event(0), event(1), event(2), event(3), event(4), event(4), "{not json"]) + "\n")
        # An unreadable line fails the dry run too (exit 1): it is the pre-flight check.
        report = tool("producer", "backfill", second, "--dry-run", expect=1).stdout
        expected = {"new, to send": 2, "counted already": 3, "repeated in the file": 1, "unreadable": 1}
        for label, number in expected.items():
            if not re.search(rf"{re.escape(label)}[^:]*:\s+{number}\b", report):
                raise Failure(f"the dedup report should say {label}: {number}:\n{report}")
        if "line 7" not in report or "dry run: nothing sent" not in report:
            raise Failure(f"the report should name line 7 and send nothing:\n{report}")
        time.sleep(1)
        if counted(tenant) != 3:
            raise Failure("the dry run sent events")
        result = tool("producer", "backfill", second, expect=1)
        if "2 accepted" not in result.stdout:
            raise Failure(f"the backfill should send the 2 new events:\n{result.stdout}")
        wait("the 2 new events counted", 60, lambda: counted(tenant) == 5)
        time.sleep(1)
        if counted(tenant) != 5:
            raise Failure(f"expected 5 events counted after the backfill, got {counted(tenant)}")
    log("producer backfill: the report counted 2 new, 3 counted, 1 repeated, 1 unreadable; only the 2 new were sent")


def main():
    helps()
    configs()
    refusals()
    unreachable()
    invoicer_dlq()
    invoice = rerun()
    resend(invoice)
    backfill()
    log("passed")
    return 0


if __name__ == "__main__":
    require("TALLY_API_URL", "BILLING_ADMIN_TOKEN", "DATABASE_URL", "AMQP_URL", "MAIL_SINK_DIR", "FINANCE_EMAIL", "TALLY_RABBITMQCTL")
    try:
        sys.exit(main())
    except Failure as failure:
        print(f"ops CLI test FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
