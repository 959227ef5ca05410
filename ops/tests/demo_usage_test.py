"""The demo's generated month of usage, at every hour of a day: no event lies in the future.

`ops/demo/demo.py` generates each tenant's month up to ten minutes before it runs and
sends it through the ingest API, which refuses an event more than five minutes ahead.
A daily seat count at 09:00 was once generated for the day the demo ran in, whatever
the hour: the demo (and `./ops/local.sh test`) failed whenever it ran before 09:10 UTC.
This checks the generation alone, for fixed dates at each hour of the day (no server,
no dependence on today's date), as the demo calls it.
"""
import datetime as dt
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "demo"))
import demo  # noqa: E402

UTC = dt.timezone.utc


def check(now: dt.datetime) -> list:
    problems = []
    start = (now - dt.timedelta(days=33)).replace(hour=0, minute=0, second=0, microsecond=0)
    cut = now - dt.timedelta(minutes=10)
    rng = random.Random(now.timestamp())
    for tenant in demo.tenants_of_this_run():
        if "cancel_day" in tenant.options:
            tenant.options["ends"] = start + dt.timedelta(days=tenant.options["cancel_day"], hours=17)
        begin = start - dt.timedelta(days=tenant.options.get("trial_days", 0))
        demo.generate_usage(tenant, begin, cut, rng)
        end = min(cut, tenant.options.get("ends", cut))
        times = [demo.parse_time(event["time"]) for event in tenant.backfill]
        late = [t for t in times if t >= end]
        early = [t for t in times if t < begin]
        if late:
            problems.append(f"{now}: {tenant.name}: {len(late)} event(s) at or after {end}, the first {min(late)}")
        if early:
            problems.append(f"{now}: {tenant.name}: {len(early)} event(s) before {begin}")
        # Every day's seat count is there once its 09:00 has passed.
        seats = sorted(demo.parse_time(e["time"]) for e in tenant.backfill if e["type"] == "users")
        expected = []
        day = begin
        while day + dt.timedelta(hours=9) < end:
            expected.append(day + dt.timedelta(hours=9))
            day += dt.timedelta(days=1)
        if seats != expected:
            problems.append(f"{now}: {tenant.name}: seat counts {len(seats)} ≠ {len(expected)} days past 09:00")
    return problems


def main() -> int:
    problems = []
    moments = 0
    for day in (dt.datetime(2026, 3, 1, tzinfo=UTC), dt.datetime(2027, 1, 31, tzinfo=UTC)):
        for minutes in range(0, 24 * 60, 30):
            problems += check(day + dt.timedelta(minutes=minutes, seconds=17))
            moments += 1
    for problem in problems[:20]:
        print(f"demo usage test: {problem}", file=sys.stderr)
    if problems:
        print(f"demo usage test: FAILED, {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"demo usage test: the generated month holds no future event and every past day's seat count, at {moments} moments of 2 days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
