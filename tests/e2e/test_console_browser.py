"""The auditor's console in a real browser: Debian's chromium driven by chromium-driver (Selenium).

Sign in, filter the log, open an entry, verify its proof in the page (WebCrypto) and see a
tampered proof fail, check the head's consistency across visits, read a chart; on a server that
stages audit entries, see them pending in the list, ask where one stands, and see them numbered
once sequenced. With
``IDVERIFY_CONSOLE_SCREENSHOTS=<dir>`` each page is also saved there as a PNG (the README's
pictures come from ``docs/console/``, made this way over synthetic data).

``.ci/run`` installs chromium and chromium-driver with apt; only where neither can be found does
this module skip, and its reason says so loudly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from idverify.audit.checkpoint import public_key_pem
from idverify.testing import ServerProcess
from idverify.v1 import account_pb2, verification_pb2
from tests.e2e.conftest import person, start, verify, wrong_code
from tests.e2e.test_audit_pending import Staging, staging_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SCREENSHOTS = os.environ.get("IDVERIFY_CONSOLE_SCREENSHOTS", "")
WAIT_SECONDS = 20

# Serial: a browser is the heaviest client of the suite, and its page waits are fixed.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.serial,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="!!! NO BROWSER: the auditor's console is NOT tested in a browser here. Install Debian's "
        "chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does) !!!",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A development server with a few signups, a refusal, a cancellation: something to look at."""
    directory = tmp_path_factory.mktemp("console-browser")
    with ServerProcess(directory, extra_args=["--workers", "1"], console=True) as running:
        with running.client("registrar") as registrar:
            for n in range(4):
                verify(running, registrar, person(), f"browser-account-{n}")
            started = start(registrar, person(), "browser-wrong-code")
            code = running.sms_code(started.verification_id)
            for _ in range(2):
                registrar.verification.SubmitChallenge(
                    verification_pb2.SubmitChallengeRequest(
                        verification_id=started.verification_id, code=wrong_code(code)
                    )
                )
        with running.client("platform") as platform:
            platform.account.CancelAccount(account_pb2.CancelAccountRequest(account_id="browser-account-3"))
        yield running


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    """Headless chromium at a fixed window size (screenshots stay comparable)."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1360,900"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    try:
        yield browser
    finally:
        browser.quit()


def wait_for(driver: WebDriver, element_id: str, text: str) -> str:
    """Waits until the element's text contains ``text``; returns the text."""
    WebDriverWait(driver, WAIT_SECONDS).until(
        expected_conditions.text_to_be_present_in_element((By.ID, element_id), text)
    )
    return str(driver.find_element(By.ID, element_id).text)


def snapshot(driver: WebDriver, name: str) -> None:
    """Saves the page as ``<IDVERIFY_CONSOLE_SCREENSHOTS>/<name>.png`` when asked to."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))


def sign_in(driver: WebDriver, server: ServerProcess, token: str) -> None:
    """Types the token into the sign-in form and sends it."""
    driver.get(f"{server.console_url}/signin")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()


class TestConsoleInBrowser:
    def test_wrong_token_stays_on_the_form(self, server: ServerProcess, driver: WebDriver) -> None:
        """A registrar's token is refused on the sign-in page, and no session starts."""
        sign_in(driver, server, server.token("registrar"))
        assert "Only auditor and admin tokens" in wait_for(driver, "message", "Only")
        driver.get(server.console_url)
        assert driver.current_url.endswith("/signin")

    def test_sign_in_and_filter_the_log(self, server: ServerProcess, driver: WebDriver) -> None:
        """An auditor signs in, sees the log, filters it by type."""
        driver.get(f"{server.console_url}/signin")
        snapshot(driver, "signin")
        sign_in(driver, server, server.token("auditor"))
        assert "default · auditor" in wait_for(driver, "who", "auditor")
        assert wait_for(driver, "log-status", "Entries").startswith("Entries 0")
        assert "HttpOnly" not in driver.execute_script("return document.cookie")
        assert driver.execute_script("return document.cookie") == ""  # HttpOnly: scripts cannot read it
        snapshot(driver, "log")
        Select(driver.find_element(By.ID, "f-types")).select_by_value("verification.verified")
        driver.find_element(By.ID, "f-apply").click()
        WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: (
                {c.text for c in d.find_elements(By.CSS_SELECTOR, "#log-rows td:nth-child(3)")}
                == {"verification.verified"}
            )
        )
        assert len(driver.find_elements(By.CSS_SELECTOR, "#log-rows tr")) == 4

    def test_open_an_entry_and_verify_its_proof(self, driver: WebDriver) -> None:
        """Clicking a row shows its canonical JSON; the page checks its inclusion and says VERIFIED."""
        driver.find_element(By.CSS_SELECTOR, "#log-rows tr").click()
        entry = wait_for(driver, "entry-json", '"type":"verification.verified"')
        assert entry.startswith('{"v":1,"seq":')
        driver.find_element(By.ID, "verify-entry").click()
        verdict = wait_for(driver, "entry-verdict", "VERIFIED")
        assert verdict.startswith("VERIFIED: entry ")
        assert "signature checked (Ed25519)" in driver.find_element(By.ID, "entry-steps").text
        snapshot(driver, "entry")

    def test_a_tampered_proof_fails(self, driver: WebDriver) -> None:
        """With one bit of the audit path flipped on its way to the page, the verdict is NOT VERIFIED."""
        driver.execute_script(
            """
            const original = window.fetch;
            window.fetch = async (url, options) => {
              const response = await original(url, options);
              if (!String(url).includes("/api/proof/inclusion")) return response;
              const body = await response.json();
              const raw = atob(body.hashes[0]);
              body.hashes[0] = btoa(String.fromCharCode(raw.charCodeAt(0) ^ 1) + raw.slice(1));
              return new Response(JSON.stringify(body), { status: 200, headers: response.headers });
            };
            """
        )
        driver.find_element(By.ID, "verify-entry").click()
        verdict = wait_for(driver, "entry-verdict", "NOT VERIFIED")
        assert "another root hash" in verdict
        snapshot(driver, "entry-tampered")

    def test_a_tampered_entry_fails(self, driver: WebDriver) -> None:
        """An entry whose bytes were changed on the way no longer hashes into the signed tree."""
        driver.refresh()
        wait_for(driver, "entry-json", '"v":1')
        driver.execute_script(
            """
            const original = window.fetch;
            window.fetch = async (url, options) => {
              const response = await original(url, options);
              if (!/\\/api\\/events\\/\\d+$/.test(String(url))) return response;
              const body = await response.json();
              body.entry = body.entry.replace('"outcome":"verified"', '"outcome":"rejected"');
              return new Response(JSON.stringify(body), { status: 200, headers: response.headers });
            };
            """
        )
        driver.find_element(By.ID, "verify-entry").click()
        assert "NOT VERIFIED" in wait_for(driver, "entry-verdict", "NOT VERIFIED")

    def test_head_and_consistency_across_visits(self, server: ServerProcess, driver: WebDriver) -> None:
        """The head's signature checks; after new entries the page proves the log extends the last seen."""
        driver.get(f"{server.console_url}/#head")
        assert wait_for(driver, "head-verdict", "VERIFIED").startswith("VERIFIED")
        assert "First visit" in wait_for(driver, "consistency-verdict", "First visit")
        fields = driver.find_element(By.ID, "head-fields").text
        key_id = fields.split("Key id")[1].split()[0]
        assert f"key id {key_id}" in driver.find_element(By.ID, "pinned-key").text  # computed in the page
        with server.client("registrar") as registrar:
            verify(server, registrar, person(), "browser-account-later")
        driver.refresh()
        assert wait_for(driver, "consistency-verdict", "CONSISTENT").startswith("CONSISTENT")
        snapshot(driver, "head")

    def test_a_forked_log_is_flagged(self, driver: WebDriver) -> None:
        """A remembered head whose root the log does not extend raises the alarm, and keeps it raised."""
        driver.execute_script(
            """
            const key = Object.keys(localStorage).find((k) => k.startsWith("idverify.last-head."));
            const last = JSON.parse(localStorage.getItem(key));
            last.root_hash = btoa(String.fromCharCode(...new Uint8Array(32)));
            last.size = Math.max(1, last.size - 1);
            localStorage.setItem(key, JSON.stringify(last));
            """
        )
        driver.refresh()
        assert "INCONSISTENT" in wait_for(driver, "consistency-verdict", "INCONSISTENT")
        driver.refresh()
        assert "INCONSISTENT" in wait_for(driver, "consistency-verdict", "INCONSISTENT")

    def test_a_swapped_key_is_flagged(self, driver: WebDriver) -> None:
        """A head signed under another key than the pinned one is NOT VERIFIED."""
        other = public_key_pem(Ed25519PrivateKey.generate().public_key()).decode("ascii")
        driver.execute_script(
            """
            const key = Object.keys(localStorage).find((k) => k.startsWith("idverify.pinned-key."));
            localStorage.setItem(key, arguments[0]);
            """,
            other,
        )
        driver.refresh()
        assert "NOT VERIFIED" in wait_for(driver, "head-verdict", "NOT VERIFIED")
        driver.find_element(By.ID, "repin").click()
        assert wait_for(driver, "head-verdict", "checks under the pinned key").startswith("VERIFIED")

    def test_read_a_chart(self, server: ServerProcess, driver: WebDriver) -> None:
        """The charts page draws today's verifications and the pending erasures; each has its CSV."""
        driver.get(f"{server.console_url}/#charts")
        wait_for(driver, "charts-status", "counted from the log's indexes")
        legend = driver.find_element(By.CSS_SELECTOR, "#chart-outcomes .legend").text
        assert "verified (5)" in legend
        assert "sms (" in driver.find_element(By.CSS_SELECTOR, "#chart-methods .legend").text
        assert driver.find_elements(By.CSS_SELECTOR, "#chart-outcomes svg rect")
        assert "pending:" in driver.find_element(By.CSS_SELECTOR, "#chart-erasures .totals").text
        reasons = driver.find_element(By.ID, "chart-reasons").text
        assert "entries (2)" in reasons  # the two wrong codes (OTP_MISMATCH)
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#charts a.csv")]
        assert len(links) == 6
        assert all(str(link).endswith(".csv") for link in links)
        snapshot(driver, "charts")

    def test_every_chart_label_is_inside_its_picture(self, server: ServerProcess, driver: WebDriver) -> None:
        """No axis label (a day, a reason code) is cut off by the edge of its chart."""
        driver.get(f"{server.console_url}/#charts")
        wait_for(driver, "charts-status", "counted from the log's indexes")
        cut = driver.execute_script(
            """
            const cut = [];
            for (const plot of document.querySelectorAll("#charts svg")) {
              const box = plot.getBoundingClientRect();
              for (const text of plot.querySelectorAll("text")) {
                const r = text.getBoundingClientRect();
                const outside = r.left < box.left - 1 || r.right > box.right + 1;
                if (outside || r.top < box.top - 1 || r.bottom > box.bottom + 1)
                  cut.push(`${plot.getAttribute("aria-label")}: ${text.textContent}`);
              }
            }
            return cut;
            """
        )
        labels = driver.find_elements(By.CSS_SELECTOR, "#charts svg text")
        assert len(labels) > 20
        assert "OTP_MISMATCH" in {label.text for label in labels}
        assert cut == []

    def test_no_request_leaves_the_origin(self, server: ServerProcess, driver: WebDriver) -> None:
        """Every resource the page loaded came from the console's own origin."""
        urls = driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
        assert urls
        assert all(str(url).startswith(server.console_url) for url in urls), urls

    def test_sign_out(self, server: ServerProcess, driver: WebDriver) -> None:
        """Sign-out returns to the form; the page is closed again."""
        driver.find_element(By.ID, "signout").click()
        WebDriverWait(driver, WAIT_SECONDS).until(lambda d: d.current_url.endswith("/signin"))
        driver.get(server.console_url)
        assert driver.current_url.endswith("/signin")


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staging]:
    """A server staging audit entries whose integration loop runs once an hour: entries stay pending."""
    with staging_server(tmp_path_factory.mktemp("console-pending"), console=True) as running:
        yield running


def shown_rows(driver: WebDriver) -> list[tuple[str, str, str]]:
    """The log's rows as (first cell, type, stream id of a pending row or '')."""
    return [
        (
            row.find_element(By.CSS_SELECTOR, "td").text,
            row.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text,
            row.get_attribute("data-stream-id") or "",
        )
        for row in driver.find_elements(By.CSS_SELECTOR, "#log-rows tr")
    ]


class TestPendingInBrowser:
    """Entries staged and not yet in the log, in the event list, then numbered once sequenced."""

    def test_pending_entries_are_marked_then_numbered(self, staging: Staging, driver: WebDriver) -> None:
        server = staging.server
        ids = staging.stage(1, "browser-pending-0", "browser-pending-1") + staging.stage(
            3, "browser-pending-2"
        )
        sign_in(driver, server, server.token("auditor"))
        wait_for(driver, "log-status", "Entries")
        Select(driver.find_element(By.ID, "f-types")).select_by_value("verification.started")
        driver.find_element(By.ID, "f-pending").click()
        driver.find_element(By.ID, "f-apply").click()
        wait_for(driver, "log-status", "3 pending")
        rows = shown_rows(driver)
        pending = [row for row in rows if row[2]]
        assert [row[2] for row in pending] == ids
        assert [row[0] for row in pending] == [
            f"pending\nbucket 1 · {ids[0]}",
            f"pending\nbucket 1 · {ids[1]}",
            f"pending\nbucket 3 · {ids[2]}",
        ]
        numbered = [row for row in rows if not row[2]]
        assert numbered
        assert all(row[0].isdigit() for row in numbered)  # the log's entries keep their number
        snapshot(driver, "log-pending")

        driver.find_element(By.CSS_SELECTOR, f'#log-rows tr[data-stream-id="{ids[2]}"]').click()
        assert ids[2] in wait_for(driver, "pending-title", "Pending entry")
        assert '"type": "verification.started"' in driver.find_element(By.ID, "pending-json").text
        # No proof to offer: the pending page has no verify button, only the question.
        assert [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#page-pending button")] == [
            "Ask where it stands now"
        ]
        assert not driver.find_element(By.ID, "verify-entry").is_displayed()
        driver.find_element(By.ID, "pending-state").click()
        assert wait_for(driver, "pending-verdict", "PENDING").startswith("PENDING: staged")

        staging.sequence()  # a second worker's pass
        driver.find_element(By.ID, "pending-state").click()
        number = (
            wait_for(driver, "pending-verdict", "SEQUENCED").split("now entry ")[1].split(" ")[0].rstrip(".")
        )
        snapshot(driver, "pending-sequenced")
        driver.find_element(By.ID, "pending-entry-link").click()
        assert '"request_id"' in wait_for(driver, "entry-json", '"type":"verification.started"')
        driver.find_element(By.ID, "verify-entry").click()
        assert wait_for(driver, "entry-verdict", "VERIFIED").startswith(f"VERIFIED: entry {number} ")

        driver.find_element(By.ID, "back-to-log").click()
        driver.find_element(By.ID, "f-apply").click()  # the same filters, pending included
        WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: number in {row[0] for row in shown_rows(d)}
        )
        rows = shown_rows(driver)
        assert [row for row in rows if row[2]] == []
        assert len(rows) == len(numbered) + len(ids)
