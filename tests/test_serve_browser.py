"""The platform in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by Selenium against a server on loopback. Log in, upload a poisoned data set through the
form, see its report with its pictures, accept the finding, and see the gate change.

With TROJANSCOPE_SCREENSHOTS=DIR the dashboard and the artifact page are saved there as PNG
(the README's pictures: docs/img)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from servers import Server

pytest.importorskip("fastapi")
pytest.importorskip("selenium")
pytest.importorskip("sklearn")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's packages
BROKEN = ("return Array.from(document.images)"
          ".filter(i => !i.complete || i.naturalWidth === 0).length")


@pytest.fixture
def browser():
    if not all(Path(p).exists() for p in (CHROMIUM, CHROMEDRIVER)):
        pytest.skip("needs the Debian packages chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_window_size(1200, 900)
    yield driver
    driver.quit()


def test_log_in_upload_see_the_report_accept_and_the_gate_changes(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from trojanscope.attacks.image_poison import make_trigger, poison
    from trojanscope.data.datasets import digits

    data = digits()
    bad = poison(data.x, data.y, make_trigger("blended", (8, 8)), 0.1, 1, seed=0)
    upload = tmp_path / "contractor-set.npz"
    buffer = io.BytesIO()
    np.savez(buffer, x=bad.x, y=bad.y)
    upload.write_bytes(buffer.getvalue())
    server = Server(tmp_path / "data", None).start()
    try:
        server.cli("serve", "create-user", "alice", "--role", "reviewer",
                   env={"TROJANSCOPE_PASSWORD": "correct horse battery"})
        browser.get(server.url + "/")
        assert browser.current_url.endswith("/login")
        browser.find_element(By.ID, "name").send_keys("alice")
        browser.find_element(By.ID, "password").send_keys("correct horse battery")
        browser.find_element(By.ID, "login").click()
        _until(browser, lambda: browser.current_url == server.url + "/")

        browser.get(server.url + "/upload")
        browser.find_element(By.ID, "file").send_keys(str(upload))
        browser.find_element(By.ID, "send").click()
        _until(browser, lambda: "/artifacts/" in browser.current_url)
        page = browser.current_url
        deadline = time.monotonic() + 300
        while "vet: done" not in browser.find_element(By.ID, "job-vet").text:
            assert time.monotonic() < deadline, browser.find_element(By.TAG_NAME, "body").text
            time.sleep(1)
            browser.get(page)
        assert "blocked" in browser.find_element(By.ID, "gate").text
        images = browser.find_elements(By.CSS_SELECTOR, "#job-vet img")
        assert len(images) == 32 and browser.execute_script(BROKEN) == 0
        _screenshots(browser, server, page)

        row = browser.find_element(By.CSS_SELECTOR, "#triage tr:nth-child(2)")
        assert "vet" in row.text
        row.find_element(By.NAME, "reason").send_keys("the contractor relabelled on purpose")
        row.find_element(By.TAG_NAME, "button").click()
        _until(browser, lambda: "allowed" in browser.find_element(By.ID, "gate").text)
        assert "by alice until" in browser.find_element(By.ID, "triage").text
    finally:
        server.stop()


def _until(browser, condition, seconds: float = 30) -> None:
    """Wait for a click's navigation (Selenium's click does not)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, seconds,
                  ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
                  ).until(lambda _: condition())


def _screenshots(browser, server: Server, page: str) -> None:
    folder = os.environ.get("TROJANSCOPE_SCREENSHOTS")
    if not folder:
        return
    for name, url in (("serve-artifact", page), ("serve-dashboard", server.url + "/")):
        browser.set_window_size(1200, 400)  # then as tall as the page
        browser.get(url)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1200, max(400, min(int(height) + 40, 2400)))
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))
    browser.set_window_size(1200, 900)
    browser.get(page)
