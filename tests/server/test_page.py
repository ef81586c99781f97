"""The status page in a real headless Chromium: a running rollout is seen progressing, with
its weight and metric charts and its timeline, and the page's abort button rolls it back."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Lab, Stack, write_policy, write_rollout
from tests.server.conftest import OPERATOR_TOKEN, StartServe, wait_phase

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402 - after the importorskip
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MakeStack = Callable[..., Stack]


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        pytest.skip("apt-get install chromium chromium-driver (scripts/setup does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,1800",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: WebDriver, css: str) -> str:
    try:
        return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))
    except StaleElementReferenceException:  # the page re-rendered meanwhile
        return ""


def bar_width(driver: WebDriver) -> int:
    fill = driver.find_element(By.CSS_SELECTOR, '#rollouts tr[data-name="checkout"] .fill')
    return int(fill.size["width"])


def test_page_shows_progress_and_its_abort_button_rolls_back(
        lab: Lab, stack_for: MakeStack, start_serve: StartServe, browser: WebDriver,
        tmp_path: Path) -> None:
    stack = stack_for("2.0.0")
    policy = write_policy(stack.dir / "policy.yaml", lab.prometheus_url)
    rollout = write_rollout(stack, version="2.0.0", policy=policy,
                            stages="[{weight: 5, pause: 4s}, {weight: 25, pause: 10m}, 50, 100]")
    ctl = start_serve(stack.store, env={"SLACK_WEBHOOK_URL": stack.slack.url()})
    assert ctl.submit(rollout.read_text(), file=str(rollout)).status_code == 201

    browser.get(ctl.url + "/")
    wait = WebDriverWait(browser, 60, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: "Enter an API token" in text_of(d, "#notice"))
    browser.find_element(By.ID, "token").send_keys(OPERATOR_TOKEN)
    browser.find_element(By.ID, "use-token").click()
    card = '[data-rollout="checkout"]'
    wait.until(lambda d: "checkout" in text_of(d, "#rollouts tbody"))
    # It progresses: the page follows it to the second stage (25%) by itself.
    wait.until(lambda d: "progressing" in text_of(d, f"{card} h2")
               and "25% on 2.0.0" in text_of(d, f"{card} .message"))
    wait.until(lambda d: "stage-reached" in text_of(d, f"{card} .timeline"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'{card} [data-metric="error-rate"] '
                                                           "circle.passed"))
    points = browser.find_element(By.CSS_SELECTOR, f"{card} svg.weight-chart polyline.weight")
    assert len(points.get_attribute("points").split()) >= 4  # 0 -> 5 -> 25: steps drawn
    assert 20 <= bar_width(browser) <= 30  # the table's bar: 25 of 100 px
    browser.save_screenshot(str(tmp_path / "progressing.png"))

    def press_abort(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, f'{card} button[data-command="abort"]').click()
        try:
            d.switch_to.alert.accept()  # "Abort checkout and send all traffic to stable?"
        except NoAlertPresentException:
            return False
        return True

    wait.until(press_abort)
    wait.until(lambda d: "aborted" in text_of(d, f"{card} h2"))
    wait.until(lambda d: "rolled-back" in text_of(d, f"{card} .timeline"))
    wait.until(lambda d: bar_width(d) == 0)
    browser.save_screenshot(str(tmp_path / "aborted.png"))
    status = wait_phase(ctl, "checkout", {"aborted"}, timeout=5)
    assert status["reason"] == "aborted by an operator"
    assert stack.all_on("stable-1")
