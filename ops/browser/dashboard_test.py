"""The dashboard in a real browser (Debian's Chromium driven by Selenium), against the
running Billing API and ingest API of `./ops/local.sh up` (their URLs and the admin token
come from .local/env). Run by `./ops/local.sh test`; screenshots go to .local/artifacts/.

A tenant of its own gets usage through the ingest API and an invoice through a billing
run scoped to it; the test then signs in with the tenant's key and checks what a user
sees against the JSON API: each usage card's value and quota, the bar's color for its
percent, the trend chart changing with the range, an alert added and removed through the
form, an invoice's PDF link, the 4-decimal value on the card, in JSON and in the CSV,
sign-out (the old cookie refused), and no horizontal overflow at 1280 and 390 px wide.
"""

import datetime
import json
import os
import sys
import time
import unittest
import urllib.error
import urllib.request
import uuid

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

API = os.environ["TALLY_API_URL"]
INGEST = os.environ["TALLY_INGEST_URL"]
ADMIN = os.environ["BILLING_ADMIN_TOKEN"]
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".local", "artifacts")
# Bands of the usage bar: green below 50 %, yellow below 80 %, red from 80 % (the page's CSS colors).
BAND_COLORS = {"low": "rgba(46, 155, 79, 1)", "elevated": "rgba(224, 168, 0, 1)", "high": "rgba(210, 60, 60, 1)"}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def call(method, url, token=None, body=None, cookie=None, follow=True):
    """One HTTP request; returns (status, headers, body bytes) whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if cookie:
        request.add_header("Cookie", cookie)
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def call_json(method, url, token=None, body=None):
    status, _, payload = call(method, url, token, body)
    if status >= 300:
        raise AssertionError(f"{method} {url} answered {status}: {payload[:500]!r}")
    return json.loads(payload) if payload else None


def until(what, condition, timeout=90):
    """Polls `condition` until it returns a truthy value (the synchronization: the
    pipeline is asynchronous); fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class DashboardInABrowser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(ARTIFACTS, exist_ok=True)
        tenant = call_json("POST", f"{API}/v1/tenants", ADMIN, {"name": "Browser Test Co", "billing_email": "ap@browser.test"})
        cls.tenant, cls.key = tenant["id"], tenant["api_key"]
        now = datetime.datetime.now(datetime.timezone.utc)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        previous_month = (month_start - datetime.timedelta(days=1)).replace(day=1)
        # On the starter plan (quotas: 50 estimates, 1,000 API calls, 3 seats) since last month,
        # so last month's period is invoiced by the billing run below.
        call_json("POST", f"{API}/v1/subscriptions", ADMIN, {"tenant_id": cls.tenant, "plan": "starter", "start": iso(previous_month)})
        moment = max(month_start, now - datetime.timedelta(minutes=1))
        run = uuid.uuid4().hex[:8]
        events = [
            {"id": f"{run}-1", "type": "api_calls", "quantity": "600.5", "time": iso(moment)},
            {"id": f"{run}-2", "type": "api_calls", "quantity": "0.0001", "time": iso(moment)},
            {"id": f"{run}-3", "type": "estimates", "quantity": 45, "time": iso(moment)},
            {"id": f"{run}-4", "type": "users", "quantity": 1, "time": iso(moment)},
        ]
        call_json("POST", f"{INGEST}/v1/events", cls.key, events)
        expected = {"api_calls": "600.5001", "estimates": "45", "users": "1"}

        def counted():
            usage = call_json("GET", f"{API}/v1/usage", cls.key)
            values = {metric["metric"]: metric["value"] for metric in usage["metrics"]}
            return usage if all(values.get(name) == value for name, value in expected.items()) else None

        cls.usage = until("the usage to be counted", counted)
        # Last month's period is due an hour (the grace) after this month began.
        as_of = max(now, month_start + datetime.timedelta(hours=2))
        call_json("POST", f"{API}/v1/billing-runs", ADMIN, {"as_of": iso(as_of), "tenant_id": cls.tenant})
        cls.invoices = until("last month's invoice", lambda: call_json("GET", f"{API}/v1/invoices", cls.key)["data"])

        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
            options.add_argument(argument)
        cls.browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        cls.browser.set_window_size(1280, 800)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()

    def open(self, path):
        self.browser.get(API + path)

    def shot(self, name):
        self.browser.save_screenshot(os.path.join(ARTIFACTS, f"dashboard-{name}.png"))

    def sign_in(self, key):
        self.open("/dashboard")
        WebDriverWait(self.browser, 10).until(expected_conditions.url_contains("/dashboard/sign-in"))
        self.browser.find_element(By.ID, "api_key").send_keys(key)
        self.browser.find_element(By.CSS_SELECTOR, "form[action='/dashboard/sign-in'] button").click()
        WebDriverWait(self.browser, 10).until(expected_conditions.url_contains("/dashboard/usage"))

    def sign_out(self):
        self.browser.find_element(By.CSS_SELECTOR, "form[action='/dashboard/sign-out'] button").click()
        WebDriverWait(self.browser, 10).until(expected_conditions.url_contains("/dashboard/sign-in"))

    def no_horizontal_overflow(self, page):
        overflow = self.browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        self.assertLessEqual(overflow, 0, f"{page} overflows horizontally by {overflow}px")

    def session_cookie(self):
        return "; ".join(f"{c['name']}={c['value']}" for c in self.browser.get_cookies())

    def test_dashboard(self):
        self.sign_in(self.key)
        self.shot("usage-1280")

        # Each card: value and quota as GET /v1/usage says; the bar colored for its percent.
        for metric in self.usage["metrics"]:
            card = self.browser.find_element(By.CSS_SELECTOR, f"section.card[data-metric='{metric['metric']}']")
            shown = card.find_element(By.CSS_SELECTOR, "[data-field=value]").text.replace(",", "")
            self.assertEqual(shown, metric["value"], metric["metric"])
            quota = card.find_element(By.CSS_SELECTOR, "[data-field=quota]").text.replace(",", "")
            self.assertEqual(quota, metric["quota"], metric["metric"])
            percent = metric["percent"]
            band = "low" if percent < 50 else "elevated" if percent < 80 else "high"
            bar = card.find_element(By.CSS_SELECTOR, ".bar span")
            self.assertEqual(bar.get_attribute("data-level"), band, metric["metric"])
            self.assertEqual(bar.value_of_css_property("background-color"), BAND_COLORS[band], metric["metric"])
        self.assertEqual({m["metric"]: m["percent"] for m in self.usage["metrics"]}, {"api_calls": 60, "estimates": 90, "users": 33})

        # Exact decimals end to end: the card, the JSON and the CSV agree on 600.5001.
        card_value = self.browser.find_element(
            By.CSS_SELECTOR, "section.card[data-metric='api_calls'] [data-field=value]").text.replace(",", "")
        self.assertEqual(card_value, "600.5001")
        today = datetime.datetime.now(datetime.timezone.utc).date()
        status, _, csv = call(
            "GET", f"{API}/v1/usage/export.csv?from={today - datetime.timedelta(days=1)}&to={today + datetime.timedelta(days=1)}", self.key)
        self.assertEqual(status, 200)
        self.assertIn(f",api_calls,sum,600.5001\r\n", csv.decode())

        # Trend: switching the range redraws the chart (other buckets) and marks the range chosen.
        self.open("/dashboard/trend?range=current_period")
        first = self.browser.find_element(By.CSS_SELECTOR, "polyline[data-metric='api_calls']").get_attribute("points")
        self.browser.find_element(By.LINK_TEXT, "Last 3 months").click()
        WebDriverWait(self.browser, 10).until(expected_conditions.url_contains("range=last_3_months"))
        second = self.browser.find_element(By.CSS_SELECTOR, "polyline[data-metric='api_calls']").get_attribute("points")
        self.assertNotEqual(first, second)
        self.assertGreater(len(second.split()), len(first.split()))
        current = self.browser.find_element(By.CSS_SELECTOR, ".ranges a[aria-current]").text
        self.assertEqual(current, "Last 3 months")
        self.assertTrue(self.browser.find_elements(By.CSS_SELECTOR, "table tbody tr"))
        self.shot("trend-1280")

        # Alerts: added by the form, seen by the API, removed by the form.
        self.open("/dashboard/alerts")
        self.browser.find_element(By.NAME, "metric").clear()
        self.browser.find_element(By.NAME, "metric").send_keys("api_calls")
        self.browser.find_element(By.NAME, "threshold_value").send_keys("900")
        self.browser.find_element(By.XPATH, "//button[text()='Add alert']").click()
        WebDriverWait(self.browser, 10).until(lambda browser: browser.find_elements(By.CSS_SELECTOR, "tr[data-alert]"))
        alerts = call_json("GET", f"{API}/v1/alerts", self.key)["data"]
        self.assertEqual([(a["metric"], a["kind"], a["threshold_value"]) for a in alerts], [("api_calls", "threshold", "900")])
        row = self.browser.find_element(By.CSS_SELECTOR, f"tr[data-alert='{alerts[0]['id']}']")
        self.shot("alerts-1280")
        row.find_element(By.XPATH, ".//button[text()='Remove']").click()
        WebDriverWait(self.browser, 10).until(
            lambda browser: not browser.find_elements(By.CSS_SELECTOR, f"tr[data-alert='{alerts[0]['id']}']"))
        self.assertEqual(call_json("GET", f"{API}/v1/alerts", self.key)["data"], [])

        # Invoices: the run's invoice is listed; its PDF link answers a PDF to this session.
        self.open("/dashboard/invoices")
        number = self.invoices[0]["number"]
        link = self.browser.find_element(By.LINK_TEXT, f"{number}.pdf").get_attribute("href")
        status, headers, body = call("GET", link, cookie=self.session_cookie())
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/pdf")
        self.assertTrue(body.startswith(b"%PDF-"))
        self.shot("invoices-1280")

        # Upcoming charges: the total equals GET /v1/invoices/upcoming's.
        self.open("/dashboard/upcoming")
        upcoming = call_json("GET", f"{API}/v1/invoices/upcoming", self.key)
        total = self.browser.find_element(By.CSS_SELECTOR, "[data-field=total]").text
        self.assertEqual(total, "${:,.2f}".format(upcoming["total_cents"] / 100))

        # Nothing overflows horizontally, wide or at a phone's width.
        for width, height in ((1280, 800), (390, 844)):
            self.browser.set_window_size(width, height)
            for page in ("usage", "trend?range=last_6_months", "upcoming", "invoices", "alerts", "webhooks"):
                self.open(f"/dashboard/{page}")
                self.no_horizontal_overflow(f"{page} at {width}px")
                if width == 390:
                    self.shot(page.split("?")[0] + "-390")
        self.browser.set_window_size(1280, 800)

        # Sign out: the pages ask to sign in again, and the old cookie is refused.
        self.open("/dashboard/usage")
        cookie = self.session_cookie()
        self.sign_out()
        self.open("/dashboard/usage")
        self.assertIn("/dashboard/sign-in", self.browser.current_url)
        status, headers, _ = call("GET", f"{API}/dashboard/usage", cookie=cookie, follow=False)
        self.assertEqual(status, 303)
        self.assertEqual(headers["Location"], "/dashboard/sign-in")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
