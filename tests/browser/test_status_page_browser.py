"""The verdict as a person sees it: the status page and the MLflow UI in headless Debian Chromium.

Selenium drives /usr/bin/chromium through /usr/bin/chromedriver (both Debian packages, installed by
.ci/run); giving the driver's path skips Selenium Manager, so nothing is downloaded at run time.
Screenshots are kept in tests/browser/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from mlflow import MlflowClient

from tests.deploy.stack import Web, Worker, guard_env, mlflow_delivery, version_created_data
from tests.listener.worker.helpers import register_model
from tests.support.procs import MlflowServer

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
SECRET = "browser-test-webhook-secret"
VERDICT_LINE = ".//*[starts-with(normalize-space(.), 'PASSED \u00b7')]"
OWNER_TEXT = "Owner's notes: trained on the 2026 data."


def wait_until(check: Callable[[], object], timeout: float, what: str, page: Callable[[], str]) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    pytest.fail(f"{what} not visible within {timeout}s; page text:\n{page()[:3000]}")


def _description_cell(browser, by) -> tuple[str, str] | None:
    """(row text, description cell text) of the first version row showing a verdict line, or None."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:  # the table re-renders while it loads: look again rather than hold on to old elements
        for row in browser.find_elements(by.CSS_SELECTOR, "[role=row], tr"):
            cells = [e for e in row.find_elements(by.XPATH, VERDICT_LINE) if e.is_displayed()]
            if cells:
                return row.text, cells[-1].text.strip()
    except StaleElementReferenceException:
        return None
    return None


def test_verdict_visible_on_status_page_and_in_mlflow_ui(tmp_path: Path, mlflow_server: MlflowServer,
                                                        browser) -> None:
    from selenium.webdriver.common.by import By

    env = guard_env(GUARD_MLFLOW_SECRET=SECRET, MLFLOW_TRACKING_URI=mlflow_server.url,
                    GUARD_DATA_DIR=str(tmp_path / "guard"))
    web = Web(env, tmp_path / "web.log", workers=1)
    worker = Worker(env, tmp_path / "worker.log", threads=1)
    try:
        web.start()
        worker.start()
        client = MlflowClient(tracking_uri=mlflow_server.url)
        name, version = register_model(client, tmp_path, name=f"browser-{uuid.uuid4().hex[:6]}")
        client.update_model_version(name, version, description=OWNER_TEXT)
        headers, body = mlflow_delivery(SECRET, "created", version_created_data(client, name, version))
        req = urllib.request.Request(web.url + "/webhooks/mlflow", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 202, json.loads(resp.read())
        deadline = time.monotonic() + 90
        while not client.get_model_version(name, version).tags.get("validation.status"):
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.3)
        assert client.get_model_version(name, version).tags["validation.status"] == "PASSED"

        SCREENSHOTS.mkdir(exist_ok=True)
        page_text = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731

        # 1. The listener's status page: a green PASSED badge in the row of this version.
        browser.get(f"{web.url}/?model={quote(name)}")
        row = wait_until(lambda: [r for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")
                                  if name in r.text], 20, "the version's row", page_text)[0]
        badge = row.find_element(By.CSS_SELECTOR, "span.badge")
        assert badge.is_displayed() and badge.text == "PASSED"
        # A green badge, as a person reads it (whatever the exact shade).
        red, green, blue = (int(float(c)) for c in re.findall(r"[\d.]+",
                                                              badge.value_of_css_property("background-color"))[:3])
        assert green > red and green > blue, badge.value_of_css_property("background-color")
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        assert cells[1] == name and cells[2] == str(version) and cells[4] == "model_version.created"
        assert cells[3] == ""  # a version-created event names no alias
        browser.save_screenshot(str(SCREENSHOTS / "status-page.png"))

        # 2. Its link leads to the version in the MLflow UI, where the tags and the description show it.
        link = row.find_element(By.LINK_TEXT, "open version")
        expected = f"{mlflow_server.url}/#/models/{quote(name)}/versions/{version}"
        assert link.get_attribute("href") == expected
        link.click()
        wait_until(lambda: "validation.status" in page_text(), 90, "the validation tags", page_text)
        assert browser.current_url == expected
        text = page_text()
        assert "validation.status\nPASSED" in text, text[:3000]
        # The description, rendered as Markdown: the verdict line first (the marker is not shown), the
        # owner's own text after the section.
        description = wait_until(lambda: [e for e in browser.find_elements(By.XPATH, VERDICT_LINE[1:])
                                          if e.is_displayed()], 30, "the verdict line of the description",
                                 page_text)[-1]
        assert re.match(r"PASSED \u00b7 validation \d{4}-\d\d-\d\d \d\d:\d\dZ", description.text.strip())
        assert "validation:start" not in text and text.index("PASSED \u00b7") < text.index(OWNER_TEXT)
        browser.save_screenshot(str(SCREENSHOTS / "mlflow-model-version.png"))

        # 3. The model page's list of versions shows the start of each description: the verdict.
        browser.get(f"{mlflow_server.url}/#/models/{quote(name)}")
        row_text, cell_text = wait_until(lambda: _description_cell(browser, By), 60,
                                         "the version's description in the model page", page_text)
        # The column is a dozen characters wide: the status comes first, so it is what shows.
        assert cell_text.startswith("PASSED \u00b7 valid"), cell_text
        assert "validation:" not in row_text.split("Add\n", 1)[-1], row_text  # no raw marker in the column
        browser.save_screenshot(str(SCREENSHOTS / "mlflow-model-versions-list.png"))
    finally:
        worker.stop()
        web.stop()
