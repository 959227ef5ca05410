#!/usr/bin/env python3
"""A RabbitMQ node dies during a 100,000-event run, and then the node that leads
`aggregator.usage` dies too: nothing is lost, nothing is counted twice.

Runs against a stack started with `./ops/local.sh up --cluster 3`. `./ops/local.sh test`
starts one of its own for this in .local/cluster-test; its .local/env must be exported,
and TALLY_LOCAL_DIR and TALLY_PORT_OFFSET must name that stack.

The steps:
- A sender posts 100,000 `api_calls` events of 20 new tenants to `POST /v1/events`, 500 per
  request, at a steady pace. A refused request (5xx, or no answer) is sent again with the
  same event ids, as a client would.
- At 20,000 events sent, a node that does not lead `aggregator.usage` gets SIGKILL. At
  40,000 it is started again and rejoins. At 60,000 the leader's node gets SIGKILL; at
  80,000 that node is started again.
- The sender never waits for a kill: events flow through each failover.

The checks:
- PostgreSQL holds exactly 100,000 distinct events of the run's tenants. `GET /v1/usage`
  sums to 100,000, and stays there once every queue is empty.
- Nothing is parked.
- Every quorum queue has its 3 members again.
- Ingest answered 5xx only inside a failover: from a kill until the queue has a live
  leader again, plus the producer's longest reconnect wait (5 s).
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
import datetime as dt

from stack import ENV, LOCAL, ROOT, Failure, counted, new_tenant, psql, require, wait

EVENTS, PER_REQUEST, TENANTS = 100_000, 500, 20
PACE = 5_000  # events per second the sender aims at, so the run spans the kills
PRODUCER_RECONNECT_MAX = 5.0  # DurablePublisher's longest wait between reconnects


def log(text: str) -> None:
    print(f"cluster test: {text}", flush=True)


def rabbitmqctl(*arguments: str, node: str = None, check: bool = True) -> str:
    command = [ENV["TALLY_RABBITMQCTL"], "-q"] + (["-n", node] if node else []) + list(arguments)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise Failure(f"rabbitmqctl {' '.join(arguments)} failed: {result.stderr.strip()[:300]}")
    return result.stdout


def local_sh(*arguments: str) -> None:
    result = subprocess.run([os.path.join(ROOT, "ops", "local.sh")] + list(arguments), capture_output=True, text=True)
    if result.returncode != 0:
        raise Failure(f"./ops/local.sh {' '.join(arguments)} failed: {result.stderr[-800:]}")


def queues() -> dict:
    """name -> (leader, members, online) of every quorum queue, as the live nodes see them."""
    found = {}
    for line in rabbitmqctl("list_queues", "name", "leader", "members", "online", "--no-table-headers", check=False).splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            found[parts[0]] = (parts[1], parts[2].strip("[]").split(", "), parts[3].strip("[]").split(", "))
    return found


def pid_of(node: int) -> int:
    with open(os.path.join(LOCAL, "run", f"rabbitmq-{node}.pid")) as file:
        return int(file.read().strip())


def node_number(name: str) -> int:
    return int(name.split("@")[0].split("-")[1])


class Sender(threading.Thread):
    """Posts the run's events; `allowed` holds it at a phase's threshold until the phase before is done."""

    def __init__(self, tenants):
        super().__init__(daemon=True)
        self.tenants = tenants
        self.sent = 0
        self.allowed = 20_000
        self.refusals = []  # (time, status or error) of every refused attempt
        self.error = None
        self.condition = threading.Condition()
        url = urllib.parse.urlparse(ENV["TALLY_INGEST_URL"])
        self.address = (url.hostname, url.port)

    def post(self, connection, body: bytes):
        connection.request("POST", "/v1/events", body=body, headers={
            "Authorization": "Bearer " + ENV["BILLING_ADMIN_TOKEN"], "Content-Type": "application/x-ndjson"})
        response = connection.getresponse()
        return response.status, response.read()

    def run(self) -> None:
        try:
            connection = http.client.HTTPConnection(*self.address, timeout=30)
            started = time.monotonic()
            now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
            stamp = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            while self.sent < EVENTS:
                with self.condition:
                    while self.sent >= self.allowed:
                        self.condition.wait()
                batch = [json.dumps({"id": f"cluster-{uuid.uuid4()}", "tenant_id": self.tenants[(self.sent + i) % TENANTS],
                                     "type": "api_calls", "quantity": 1, "time": stamp})
                         for i in range(PER_REQUEST)]
                body = "\n".join(batch).encode()
                while True:  # the same batch, the same ids, until accepted
                    try:
                        status, answer = self.post(connection, body)
                    except (http.client.HTTPException, OSError) as error:
                        connection.close()
                        connection = http.client.HTTPConnection(*self.address, timeout=30)
                        status, answer = f"no answer ({error.__class__.__name__})", b""
                    if status == 202:
                        break
                    if isinstance(status, int) and status < 500:
                        raise Failure(f"ingest refused a valid batch with {status}: {answer[:300]!r}")
                    self.refusals.append((time.monotonic(), status))
                    time.sleep(0.1)
                with self.condition:
                    self.sent += PER_REQUEST
                    self.condition.notify_all()
                ahead = self.sent / PACE - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        except Exception as error:  # reported by the main thread
            self.error = error

    def allow(self, events: int) -> None:
        with self.condition:
            self.allowed = events
            self.condition.notify_all()

    def reach(self, events: int) -> None:
        with self.condition:
            while self.sent < events and self.error is None and self.is_alive():
                self.condition.wait(timeout=1)
        if self.error:
            raise self.error


def kill(node: int, windows: list, why: str) -> None:
    pid = pid_of(node)
    log(f"SIGKILL rabbitmq-{node} (pid {pid}, {why})")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    dead = f"tally-{node}@localhost"

    def led_elsewhere() -> bool:
        leader = queues().get("aggregator.usage", ("", [], []))[0]
        return leader not in ("", dead)
    wait(f"a leader of aggregator.usage on a live node after rabbitmq-{node} died", 120, led_elsewhere)
    led_at = time.monotonic()
    windows.append((killed_at, led_at))
    log(f"aggregator.usage led by {queues()['aggregator.usage'][0]} {led_at - killed_at:.1f} s after the kill")


def restart(node: int) -> None:
    log(f"starting rabbitmq-{node} again")
    local_sh("start", f"rabbitmq-{node}")

    def member_again() -> bool:
        found = queues()
        return bool(found) and all(f"tally-{node}@localhost" in online for _, _, online in found.values())
    wait(f"rabbitmq-{node} back online in every quorum queue", 180, member_again)


def main() -> int:
    start = queues()
    if not start or any(len(members) != 3 for _, members, _ in start.values()):
        raise Failure(f"every quorum queue should have 3 members before the run: {start}")
    log(f"{len(start)} quorum queues, each with 3 members; aggregator.usage led by {start['aggregator.usage'][0]}")
    tenants = [new_tenant(f"Cluster test {i}", f"cluster{i}@test.invalid") for i in range(TENANTS)]
    sender = Sender(tenants)
    sender.start()
    windows = []

    sender.reach(20_000)
    leader = node_number(queues()["aggregator.usage"][0])
    follower = next(n for n in (1, 2, 3) if n != leader)
    sender.allow(40_000)
    kill(follower, windows, "a follower of aggregator.usage")
    sender.reach(40_000)
    sender.allow(60_000)
    restart(follower)
    sender.reach(60_000)
    leader = node_number(queues()["aggregator.usage"][0])
    sender.allow(80_000)
    kill(leader, windows, "the leader of aggregator.usage")
    sender.reach(80_000)
    sender.allow(EVENTS)
    restart(leader)
    sender.reach(EVENTS)
    sender.join()
    if sender.error:
        raise sender.error
    log(f"sent {EVENTS:,} events in {EVENTS // PER_REQUEST} requests; {len(sender.refusals)} refused attempt(s), each sent again")

    ids = "ARRAY[" + ",".join(f"'{t}'::uuid" for t in tenants) + "]"

    def all_counted() -> bool:
        return int(psql(f"SELECT count(*) FROM usage_events WHERE tenant_id = ANY({ids})")) >= EVENTS
    wait("all 100,000 events stored", 300, all_counted)

    def queues_empty() -> bool:
        return all(line.split("\t")[1] == "0" for line in
                   rabbitmqctl("list_queues", "name", "messages", "--no-table-headers").splitlines()
                   if line.startswith("aggregator.usage"))
    wait("aggregator.usage and its retry queues empty", 300, queues_empty)
    stored, distinct = psql(f"SELECT count(*), count(DISTINCT (tenant_id, event_id)) FROM usage_events WHERE tenant_id = ANY({ids})").split("|")
    total = sum(counted(tenant) for tenant in tenants)
    parked = [line for line in rabbitmqctl("list_queues", "name", "messages", "--no-table-headers").splitlines()
              if ".parked" in line and line.split("\t")[1] != "0"]
    end = queues()
    log(f"stored {stored} events ({distinct} distinct); GET /v1/usage sums to {total}")
    if int(stored) != EVENTS or int(distinct) != EVENTS or total != EVENTS:
        raise Failure(f"expected exactly {EVENTS} events counted once: stored {stored}, distinct {distinct}, usage {total}")
    if parked:
        raise Failure(f"messages were parked: {parked}")
    if end.keys() != start.keys() or any(len(online) != 3 for _, _, online in end.values()):
        raise Failure(f"every quorum queue of the start should have its 3 members back: {end}")

    # Ingest's refusals must fall inside a failover (a kill until a live leader, plus the
    # producer's longest reconnect wait); 202s elsewhere.
    outside = [(t, status) for t, status in sender.refusals
               if not any(killed <= t <= led + PRODUCER_RECONNECT_MAX for killed, led in windows)]
    if outside:
        raise Failure(f"ingest refused {len(outside)} attempt(s) outside any failover: {outside[:5]}")
    longest = max((led - killed for killed, led in windows), default=0)
    log(f"ingest refused {len(sender.refusals)} attempt(s), all within a failover (longest failover {longest:.1f} s)")
    log("passed: two node kills during 100,000 events, none lost, none counted twice, nothing parked")
    return 0


if __name__ == "__main__":
    require("TALLY_API_URL", "TALLY_INGEST_URL", "BILLING_ADMIN_TOKEN", "TALLY_RABBITMQCTL", "DATABASE_URL")
    try:
        sys.exit(main())
    except Failure as failure:
        print(f"cluster test FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
