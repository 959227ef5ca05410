#!/usr/bin/env python3
"""ops/rollback.sh on the running stack (needs .local/env exported), while usage flows:

1. The build that runs is saved as a release. A "previous" release is made from the same
   binaries and the migrations without the newest one: the build before that migration.
   An "ancient" release stops before migration 18, which cannot be undone.
2. `--dry-run --to previous` prints every step, and changes nothing: the same processes,
   the same schema, no release pinned.
3. `--to ancient` is refused before anything changes, naming migration 18.
4. A sender posts 20,000 events through ingest, 200 per request, resending a refused request
   with the same ids. Meanwhile:
   - `--to previous` really rolls back: the newest migration's down step, every process on the
     release's binaries, and the probe event counted (when the newest migration is blocking,
     `--to` a release without it is refused first, and `previous` keeps the schema);
   - `--to build` rolls forward: the migration applied again, the build's binaries running.
5. All 20,000 events are counted exactly once.
"""
import datetime as dt
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

from stack import ENV, LOCAL, ROOT, Failure, counted, new_tenant, psql, require

ROLLBACK = os.path.join(ROOT, "ops", "rollback.sh")
EVENTS, PER_REQUEST = 20_000, 200


def log(text):
    print(f"rollback test: {text}", flush=True)


def rollback(*arguments, expect=0):
    result = subprocess.run([ROLLBACK] + list(arguments), capture_output=True, text=True, timeout=900)
    if expect is not None and result.returncode != expect:
        raise Failure(f"ops/rollback.sh {' '.join(arguments)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def tally_pids():
    pids = {}
    for name in os.listdir(os.path.join(LOCAL, "run")):
        role = name[:-4]
        if name.endswith(".pid") and role.split("-")[0] in ("producer", "aggregator", "invoicer", "notifier", "billing"):
            pids[role] = open(os.path.join(LOCAL, "run", name)).read().strip()
    return pids


def binaries_of_running_processes():
    return {role: os.path.realpath(f"/proc/{pid}/exe") for role, pid in tally_pids().items() if os.path.exists(f"/proc/{pid}")}


def refused_migrations(message):
    """The migrations a refused rollback names ("… predates migration(s) 22 18, which …")."""
    words = message.split("migration(s)", 1)[1].split(",", 1)[0].split() if "migration(s)" in message else []
    return [int(word) for word in words if word.isdigit()]


def has_index(name):
    return psql(f"SELECT count(*) FROM pg_indexes WHERE indexname = '{name}'") == "1"


class Sender(threading.Thread):
    def __init__(self, tenant):
        super().__init__(daemon=True)
        self.tenant, self.sent, self.refused, self.error = tenant, 0, 0, None
        url = urllib.parse.urlparse(ENV["TALLY_INGEST_URL"])
        self.address = (url.hostname, url.port)
        self.stop_after = threading.Event()  # set once both rollbacks are done: send the rest at once

    def run(self):
        try:
            connection = http.client.HTTPConnection(*self.address, timeout=30)
            stamp = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            while self.sent < EVENTS:
                body = "\n".join(json.dumps({"id": f"rollback-{uuid.uuid4()}", "tenant_id": self.tenant, "type": "api_calls",
                                             "quantity": 1, "time": stamp}) for _ in range(PER_REQUEST)).encode()
                while True:
                    try:
                        connection.request("POST", "/v1/events", body=body, headers={
                            "Authorization": "Bearer " + ENV["BILLING_ADMIN_TOKEN"], "Content-Type": "application/x-ndjson"})
                        response = connection.getresponse()
                        response.read()
                        if response.status == 202:
                            break
                        if response.status < 500:
                            raise Failure(f"ingest refused a valid batch with {response.status}")
                    except (http.client.HTTPException, OSError):
                        connection.close()
                        connection = http.client.HTTPConnection(*self.address, timeout=30)
                    self.refused += 1
                    time.sleep(0.2)
                self.sent += PER_REQUEST
                if not self.stop_after.is_set():
                    time.sleep(0.25)
        except Exception as error:
            self.error = error


def make_release(name, source, drop_from):
    """A release with `source`'s binaries and its migrations numbered below `drop_from`."""
    target = os.path.join(LOCAL, "releases", name)
    os.makedirs(os.path.join(target, "bin"))
    for executable in os.listdir(os.path.join(source, "bin")):
        os.link(os.path.join(source, "bin", executable), os.path.join(target, "bin", executable))
    shutil.copytree(os.path.join(source, "sql"), os.path.join(target, "sql"))
    for file in os.listdir(os.path.join(target, "sql")):
        if file.endswith(".sql") and int(file[:3]) >= drop_from:
            os.remove(os.path.join(target, "sql", file))
    with open(os.path.join(target, "release.env"), "w") as f:
        f.write(f"COMMIT=test\nSCHEMA={drop_from - 1}\nSAVED_AT={dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}\n")


def main():
    if os.path.exists(os.path.join(LOCAL, "release")):
        raise Failure(f"a release is pinned ({open(os.path.join(LOCAL, 'release')).read().strip()}): ops/rollback.sh --to build first")
    latest = int(psql("SELECT max(version) FROM schema_migrations"))
    newest_file = max(int(f[:3]) for f in os.listdir(os.path.join(ROOT, "ops", "sql")) if f.endswith(".sql"))
    if latest != newest_file:
        raise Failure(f"the schema is at {latest}, ops/sql at {newest_file}: run ./ops/local.sh up first")
    suffix = uuid.uuid4().hex[:8]
    current, previous, ancient = f"test-current-{suffix}", f"test-previous-{suffix}", f"test-ancient-{suffix}"
    names = [current, previous, ancient]
    # The newest migration is undone by the rollback when it is reversible (its object must
    # be known here); when it is blocking, going back before it is refused like migration 18,
    # and the switch under traffic runs between two releases of the same schema.
    classes = {int(line.split("\t")[0]): line.split("\t")[1]
               for line in open(os.path.join(ROOT, "ops", "sql", "rollback.tsv")) if line[:1].isdigit()}
    blocking = classes.get(latest) == "blocking"
    # What the newest reversible migration adds, and whether it is there now.
    objects = {
        21: ("the index billing_run_items_failed", lambda: has_index("billing_run_items_failed")),
        23: ("the function tally_lock_tenant_usage() and its triggers",
             lambda: psql("SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%_lock_usage'") == "4"),
        24: ("the table config_changes and its fourteen triggers",
             lambda: psql("SELECT to_regclass('config_changes') IS NOT NULL AND "
                          "(SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%\\_log' ESCAPE '\\') = 14") == "t"),
        25: ("the table idempotent_requests", lambda: psql("SELECT to_regclass('idempotent_requests') IS NOT NULL") == "t"),
        26: ("the check subscriptions_ends_after_start",
             lambda: psql("SELECT count(*) FROM pg_constraint WHERE conname = 'subscriptions_ends_after_start'") == "1"),
        27: ("the columns invoices.customer_name and customer_email",
             lambda: psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'invoices' "
                          "AND column_name IN ('customer_name', 'customer_email')") == "2"),
        28: ("the column parked_events.accepted_at",
             lambda: psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'parked_events' "
                          "AND column_name = 'accepted_at'") == "1"),
        29: ("the index stripe_webhook_events_pending", lambda: has_index("stripe_webhook_events_pending")),
        30: ("the index stripe_webhook_events_detached", lambda: has_index("stripe_webhook_events_detached")),
    }
    down_object, down_present = (None, None) if blocking else objects.get(latest, (None, None))
    if not blocking and down_object is None:
        raise Failure(f"this test knows what migrations {sorted(objects)} create; teach it the newest migration's ({latest}) object")
    before_newest = f"test-before-{suffix}"
    if blocking:
        names.append(before_newest)
    try:
        rollback("save", current)
        make_release(previous, os.path.join(LOCAL, "releases", current), latest + 1 if blocking else latest)
        make_release(ancient, os.path.join(LOCAL, "releases", current), 18)
        if blocking:
            make_release(before_newest, os.path.join(LOCAL, "releases", current), latest)
        listing = rollback("releases").stdout
        if not all(name in listing for name in names) or "<- runs" not in listing.splitlines()[1]:
            raise Failure(f"ops/rollback.sh releases does not list the releases with the build running:\n{listing}")

        before = tally_pids()
        dry = rollback("--dry-run", "--to", previous)
        output = dry.stdout + dry.stderr
        for needed in ["0. plan", "1. pause billing", "2. keep metering durable", "3. schema", "4. switch binaries", "5. resume",
                       "6. verify", "nothing to undo" if blocking else f"migration {latest}: undone by", "nothing was changed"]:
            if needed not in output:
                raise Failure(f"the dry run does not say '{needed}':\n{output}")
        if tally_pids() != before or (down_object and not down_present()) or os.path.exists(os.path.join(LOCAL, "release")):
            raise Failure("the dry run changed something")
        log(f"--dry-run --to {previous}: all six steps printed, nothing changed")

        refused = rollback("--to", ancient, expect=1)
        if 18 not in refused_migrations(refused.stderr) or "refused before changing anything" not in refused.stderr:
            raise Failure(f"the rollback across migration 18 should be refused, naming it:\n{refused.stderr}")
        if tally_pids() != before or psql("SELECT max(version) FROM schema_migrations") != str(latest):
            raise Failure("the refused rollback changed something")
        log(f"--to {ancient}: refused before any change (migration 18 cannot be undone)")
        if blocking:
            refused = rollback("--to", before_newest, expect=1)
            if refused_migrations(refused.stderr) != [latest] or "refused before changing anything" not in refused.stderr:
                raise Failure(f"the rollback across the blocking migration {latest} should be refused, naming it:\n{refused.stderr}")
            if tally_pids() != before or psql("SELECT max(version) FROM schema_migrations") != str(latest):
                raise Failure("the refused rollback changed something")
            log(f"--to {before_newest}: refused before any change (migration {latest} is blocking)")

        tenant = new_tenant("Rollback test", "rollback@test.invalid")
        sender = Sender(tenant)
        sender.start()
        while sender.sent < 2_000 and sender.error is None:
            time.sleep(0.1)

        rollback("--to", previous)
        expected = latest if blocking else latest - 1
        if (down_object and down_present()) or psql("SELECT max(version) FROM schema_migrations") != str(expected):
            raise Failure(f"after the rollback the schema should be at {expected}" + (f" without {down_object}" if down_object else ""))
        running = binaries_of_running_processes()
        if not running or any(f"/releases/{previous}/bin/" not in path for path in running.values()):
            raise Failure(f"after the rollback every process should run {previous}'s binaries: {running}")
        log(f"--to {previous}: " + ("the schema kept" if blocking else f"migration {latest} undone")
            + f", {len(running)} processes on the release's binaries, probe counted "
            f"({sender.sent:,} events sent so far)")

        if sender.sent >= EVENTS:
            raise Failure("the sender finished before the roll-forward: usage would not flow through it")
        rollback("--to", "build")
        if (down_object and not down_present()) or psql("SELECT max(version) FROM schema_migrations") != str(latest):
            raise Failure(f"after rolling forward the schema should be at {latest}" + (f" with {down_object}" if down_object else ""))
        running = binaries_of_running_processes()
        build = os.path.realpath(os.path.join(ROOT, ".build", ENV.get("TALLY_BUILD_CONFIG", "debug")))
        if not running or any(not path.startswith(build + "/") for path in running.values()):
            raise Failure(f"after rolling forward every process should run the build's binaries: {running}")
        log(f"--to build: " + ("" if blocking else f"migration {latest} applied again, ")
            + f"every process on the build's binaries ({sender.sent:,} events sent so far)")

        sender.stop_after.set()
        sender.join(timeout=600)
        if sender.error:
            raise sender.error
        deadline = time.monotonic() + 300
        while True:
            stored, distinct = psql(f"SELECT count(*), count(DISTINCT event_id) FROM usage_events WHERE tenant_id = '{tenant}'").split("|")
            if int(stored) >= EVENTS or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        total = counted(tenant)
        if not (int(stored) == int(distinct) == total == EVENTS):
            raise Failure(f"expected {EVENTS} events counted once: stored {stored}, distinct {distinct}, usage {total}")
        log(f"{EVENTS:,} events sent across both switches ({sender.refused} refused attempts resent): every one counted once")
    finally:
        if os.path.exists(os.path.join(LOCAL, "release")):
            subprocess.run([ROLLBACK, "--to", "build"], capture_output=True)
        for name in names:
            shutil.rmtree(os.path.join(LOCAL, "releases", name), ignore_errors=True)
    log("passed")
    return 0


if __name__ == "__main__":
    require("TALLY_API_URL", "TALLY_INGEST_URL", "BILLING_ADMIN_TOKEN", "DATABASE_URL")
    try:
        sys.exit(main())
    except Failure as failure:
        print(f"rollback test FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
