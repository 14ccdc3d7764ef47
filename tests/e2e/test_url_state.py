"""The Train form lives in the URL: a reload keeps it, the link opens it in another browser, a bad
link says what it ignored and shows the default form.

Every wait reads the state its assertion is about in one evaluation (the URL's parameters, or
the form's widget values), with a deadline and no fixed sleeps: on a loaded 2-core machine a
rerun may take seconds, and the check simply waits for it.
"""
from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

pytestmark = pytest.mark.e2e

LONG = 90_000  # ms: a busy 2-core machine may take this long for a first page or a rerun

# The form as the page shows it: widget values read from the DOM (tabs that are not open still hold theirs).
FORM_JS = """() => {
  const input = (sel) => document.querySelector(sel);
  const value = (label) => { const e = input(`input[aria-label="${label}"]`); return e ? e.value : null; };
  const l2sp = input('input[aria-label^="L2-SP"]');
  return {model: value("Model"), lr: value("lr"), max_steps: value("max steps"), l2sp: l2sp ? l2sp.checked : null};
}"""
URL_HAS_JS = """(want) => {
  const p = new URLSearchParams(window.location.search);
  return Object.entries(want).every(([k, v]) => p.get(k) === v);
}"""


def wait_form(page, want: dict, extra_js: str = "true") -> None:
    """Wait until the form shows ``want`` (and ``extra_js`` holds), read in one evaluation."""
    page.wait_for_function(f"""(want) => {{
      const form = ({FORM_JS})();
      return Object.entries(want).every(([k, v]) => form[k] === v) && ({extra_js});
    }}""", arg=want, timeout=LONG)


def wait_url(page, want: dict) -> None:
    page.wait_for_function(URL_HAS_JS, arg=want, timeout=LONG)


def open_train(page, url: str) -> None:
    page.goto(url)
    page.locator('input[aria-label="lr"]').first.wait_for(state="attached", timeout=LONG)


def choose_model(page, option: str) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Model").first.click()
    page.get_by_role("option", name=option, exact=True).first.click()


def set_number(page, tab: str, label: str, value: str) -> None:
    page.get_by_role("tab", name=tab).click()
    box = page.locator(f'input[aria-label="{label}"]')
    box.fill(value)
    box.press("Enter")


FILLED = {"model": "tiny:gpt2", "lr": "0.0003", "max_steps": "12", "l2sp": True}


def test_a_filled_form_survives_a_reload_and_opens_from_its_link_elsewhere(page, app_server, browser, shot):
    open_train(page, str(app_server))
    wait_form(page, {"model": "tiny:bert", "lr": "0.001", "max_steps": "40", "l2sp": False})
    assert page.evaluate("() => window.location.search") == ""  # the default form: nothing to say

    # fill it in as a person would; each step waits for the URL to carry it
    choose_model(page, "tiny:gpt2")
    wait_url(page, {"model": "tiny:gpt2"})
    set_number(page, "Training & precision", "lr", "0.0003")
    wait_url(page, {"lr": "0.0003"})
    set_number(page, "Training & precision", "max steps", "12")
    wait_url(page, {"max_steps": "12"})
    page.get_by_role("tab", name="Strategy mix").click()
    page.locator('[data-testid="stCheckbox"], [data-testid="stToggle"]').filter(has_text="L2-SP").first.click()
    wait_url(page, {"mix.l2sp": "true"})
    wait_url(page, {"model": "tiny:gpt2", "lr": "0.0003", "max_steps": "12", "mix.l2sp": "true"})
    wait_form(page, FILLED)
    link = page.url
    shot(page, "e2e-40-url-filled")

    page.reload()
    wait_form(page, FILLED)
    assert page.url == link

    other = browser.new_context(viewport={"width": 1280, "height": 800})  # another browser: no session, no cookies
    try:
        elsewhere = other.new_page()
        open_train(elsewhere, link)
        wait_form(elsewhere, FILLED)
        shot(elsewhere, "e2e-41-url-opened-elsewhere")
    finally:
        other.close()
    assert not page.console_errors


def test_a_bad_link_gives_a_note_and_the_default_form(page, app_server, shot):
    open_train(page, f"{app_server}/?{urlencode({'lr': 'abc', 'colour': 'red'})}")
    note_shown = ("Array.from(document.querySelectorAll('[data-testid=stAlert]')).some(a => "
                  "a.innerText.includes('From the link') && a.innerText.includes(\"lr='abc' ignored\") && "
                  "a.innerText.includes(\"colour='red' ignored\"))")
    wait_form(page, {"model": "tiny:bert", "lr": "0.001", "max_steps": "40", "l2sp": False}, extra_js=note_shown)
    shot(page, "e2e-42-url-bad-link")
    gone = f"{app_server}/?{urlencode({'preset': 'no_such_preset', 'max_steps': '7'})}"
    open_train(page, gone)
    stale = ("Array.from(document.querySelectorAll('[data-testid=stAlert]')).some(a => "
             "a.innerText.includes(\"preset='no_such_preset' from the link does not exist\"))")
    wait_form(page, {"model": "tiny:bert", "max_steps": "40"}, extra_js=stale)
    assert json.loads(json.dumps(page.evaluate(FORM_JS)))["lr"] == "0.001"
    assert not page.console_errors
