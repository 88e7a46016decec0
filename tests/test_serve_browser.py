"""The web page of `jobctl serve` in a real headless Chromium (Debian's
`chromium` and `chromium-driver` packages, driven by selenium through
/usr/bin/chromedriver; selenium is told to stay offline, so it never tries
to download a browser or a driver).

What it proves: the page asks for a token once and keeps it where its own
script cannot read it (HttpOnly, SameSite=Strict), shows a running job's
progress moving and its output live, and shows a failure with its first
error line, all from assets jobctl serves itself. What it cannot: other
browsers, and how the page looks."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from servehelp import Served, create_token

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'jobctl[test]')")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} not found: apt-get install {package} (.ci/run does)")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never download anything
    os.environ["SE_AVOID_STATS"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as exc:  # a broken install: say why rather than fail every run
        pytest.skip(f"headless chromium did not start: {type(exc).__name__}: {str(exc)[:200]}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _until(predicate, timeout: float = 30.0, what: str = "the page"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the element is not there yet, or was redrawn meanwhile
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} never showed it (last error: {last!r})")


def test_page_asks_for_a_token_then_shows_progress_moving_and_a_failure(sqlite_env, browser):
    from selenium.webdriver.common.by import By

    env = sqlite_env
    token = create_token(env, "wall", "read")
    server = Served(env.tmp / "serve.log").start()
    try:
        slow = env.submit("DEMO_SLEEP", "-p", "p_seconds=12")
        failed = env.submit("DEMO_FAIL", "-p", "p_message=disk full on /data\nsecond line")
        browser.get(server.url + "/")
        # asks for the token: the sign-in form, not the board
        form = _until(lambda: browser.find_element(By.ID, "login").is_displayed() and
                      browser.find_element(By.ID, "token-input"), what="the sign-in form")
        assert not browser.find_element(By.ID, "board").is_displayed()
        # a wrong token is refused with the server's message
        form.send_keys("jct_0123456789abcdef_" + "z" * 43)
        browser.find_element(By.ID, "login-button").click()
        _until(lambda: "unknown token" in browser.find_element(By.ID, "login-error").text,
               what="the refusal")
        browser.find_element(By.ID, "token-input").send_keys(token)
        browser.find_element(By.ID, "login-button").click()
        _until(lambda: browser.find_element(By.ID, "board").is_displayed(), what="the board")
        # kept in a cookie the page's script cannot read
        cookie = next(c for c in browser.get_cookies() if c["name"] == "jobctl_token")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert "jobctl_token" not in browser.execute_script("return document.cookie")

        def progress() -> float:
            bar = browser.find_element(
                By.CSS_SELECTOR, f"#running tr[data-job='{slow}'] .progress")
            return float(bar.get_attribute("data-progress"))

        first = _until(lambda: progress() > 0 and progress(), what="the running job's bar")
        later = _until(lambda: progress() > first and progress(), what="the bar moving")
        assert later > first
        # the failure with its first error line only
        row = _until(lambda: browser.find_element(By.CSS_SELECTOR, f"#failures tr[data-job='{failed}']"),
                     what="the failure")
        assert "disk full on /data" in row.text and "second line" not in row.text
        # the queue line: its limit and what runs
        queue = browser.find_element(By.CSS_SELECTOR, "#queues tr[data-queue='default']")
        assert queue.text.split()[:3] == ["default", "4", "1"]
        # a job's detail, live while it runs: its output grows
        browser.find_element(By.CSS_SELECTOR, f"#running a[data-job='{slow}']").click()
        _until(lambda: browser.find_element(By.ID, "detail").is_displayed(), what="the detail")
        assert '"p_seconds": 12' in browser.find_element(By.ID, "detail-params").text
        seen = _until(lambda: browser.find_element(By.ID, "detail-output").text.count("slept"),
                      what="the output")
        _until(lambda: browser.find_element(By.ID, "detail-output").text.count("slept") > seen,
               what="more output")
        _until(lambda: browser.find_element(By.ID, "detail").get_attribute("data-status")
               == "completed", timeout=60, what="the job completing")
        # a reload keeps the sign-in
        browser.refresh()
        _until(lambda: browser.find_element(By.ID, "board").is_displayed(), what="the board again")
        assert not browser.find_element(By.ID, "login").is_displayed()
        assert token not in server.log()
    finally:
        server.stop()
