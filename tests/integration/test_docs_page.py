"""/docs rendered by a real browser, with nothing from outside this machine.

Headless Chromium (Debian's, installed by devtools/test_tools.sh) opens the
page served by the real auth process; every operation of /openapi.json must
be listed on the rendered page. A screenshot is kept as the run's artefact.
"""

from __future__ import annotations

import shutil

import pytest

from devtools.stack import http_json

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
RENDER_TIMEOUT_SECONDS = 20


def browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no chromium/chromedriver here and devtools/test_tools.sh could not install them (not root?)")
    return chromium, driver


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,2400")
    # Chromium may only reach this machine: a request to any other host fails, as on a closed network.
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def test_the_docs_page_lists_every_operation_without_the_internet(stack, browser, tmp_path, note):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    status, _, document = http_json("GET", stack.base_url + "/openapi.json")
    assert status == 200
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert len(operations) >= 10

    browser.get(stack.base_url + "/docs")

    def rendered(driver) -> set[tuple[str, str]]:
        found = set()
        for block in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary"):
            method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip()
            path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path")
            found.add((method, path))
        return found

    WebDriverWait(browser, RENDER_TIMEOUT_SECONDS).until(lambda driver: rendered(driver) >= operations)
    screenshot = tmp_path / "docs-page.png"
    browser.save_screenshot(str(screenshot))
    note(f"screenshot of /docs: {screenshot}")

    assert rendered(browser) == operations
    title = browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert document["info"]["title"] in title
    # Nothing the page asked for was refused: no failed load, no policy violation in the console.
    problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert problems == []
