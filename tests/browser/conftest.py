"""Playwright with Debian's Chromium against pytest-django's live server."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium tries to reach Google's services at start, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


# Every document of the context reports each Content-Security-Policy violation to the test
# (through an exposed function, which lives on across navigations).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(
    `${event.effectiveDirective} refused ${event.blockedURI || "(inline)"} ` +
      `at ${event.sourceFile || document.location.pathname}:${event.lineNumber}`
  );
});
"""


@pytest.fixture
def page(browser):
    """A fresh page; the test fails if any page it opened broke the Content-Security-Policy."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    violations = []

    def report(violation: str) -> None:
        violations.append(violation)

    context.expose_function("reportCspViolation", report)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    if not page.is_closed():
        page.evaluate("0")  # a round trip: reports still on their way arrive before it
    context.close()
    assert not violations, "the Content-Security-Policy refused:\n" + "\n".join(violations)


ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "screenshots"


@pytest.fixture
def screenshot(page, request):
    """``screenshot("step")`` saves the whole page as <test>-<step>.png in ARTIFACTS
    (var/test-artifacts/screenshots/, kept after the run for people to look at)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(step: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        # A full-page capture can leave Chromium's scroll offset out of step with what it
        # draws, and the next click then misses: back to the top.
        page.evaluate("window.scrollTo(0, 0)")
        return path

    return take


def sign_in(page, live_server, username, password):
    """Sign in through the login page."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def demo_passwords(settings, capsys) -> dict[str, str]:
    """Load the demo data and return the demo accounts' fresh passwords, by username."""
    from django.core.management import call_command

    settings.DEBUG = True
    call_command("seed_demo")
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line.split()[1] for line in lines if line.startswith("  demo-")}
