"""What the ops tests share about the running stack (its .local/env exported): the checkout
and its local folder, the admin API, PostgreSQL through psql, waiting for a condition, and
reading a tenant's counted usage. Imported by cluster_test.py, rollback_test.py and
ops_cli_test.py (each run as a script from this folder)."""
import datetime as dt
import json
import os
import subprocess
import time
import urllib.request

ENV = os.environ
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCAL = ENV.get("TALLY_LOCAL_DIR") or os.path.join(ROOT, ".local")
LOCAL_SH = os.path.join(ROOT, "ops", "local.sh")


class Failure(Exception):
    """A check did not hold; the message says what was expected."""


def require(*names):
    """Exits with status 2, naming the variable, unless the stack's environment is exported."""
    for name in names:
        if not ENV.get(name):
            raise SystemExit(f"{name} is not set; export the stack's .local/env (set -a; . .local/env; set +a)")


def admin(method, path, body=None):
    """The billing API with the admin token; the JSON answer."""
    request = urllib.request.Request(ENV["TALLY_API_URL"] + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Authorization", "Bearer " + ENV["BILLING_ADMIN_TOKEN"])
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def new_tenant(name, email):
    return admin("POST", "/v1/tenants", {"name": name, "billing_email": email})["id"]


def counted(tenant, metric="api_calls"):
    """The tenant's `metric` over all time, as GET /v1/usage answers it."""
    usage = admin("GET", f"/v1/usage?tenant_id={tenant}&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")
    return sum(int(m["value"]) for m in usage["metrics"] if m["metric"] == metric)


def psql(sql):
    """One statement through psql; its rows as text (`|` between columns)."""
    return subprocess.run(["psql", ENV["DATABASE_URL"], "-XqtA", "-c", sql], capture_output=True, text=True, check=True).stdout.strip()


def wait(what, seconds, check, every=0.25):
    """Calls check() until it returns something true (returned), or fails naming `what`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"{what} did not happen within {seconds:.0f} s")
        time.sleep(every)


def stamp(moment):
    """RFC 3339 with milliseconds, as events carry it."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
