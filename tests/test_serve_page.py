"""The web page at `/` in a real headless browser: Debian's chromium driven by playwright (its own browser download
cannot work here, so `executable_path` points at the system one) against `recsys serve` over the ml-latest-small
serving warehouse. A screenshot is saved in the test's tmp directory as an artifact."""
from __future__ import annotations

import os
import shutil

import pytest

from serve_warehouse import SERVED_MODELS

CHROMIUM = os.environ.get("RECSYS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("no chromium on PATH (scripts/setup.sh installs Debian's `chromium`; or set RECSYS_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def test_pick_a_user_and_see_every_models_list(browser, served_url, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served_url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    assert page.locator("#models tbody tr").count() == len(SERVED_MODELS)
    assert "[" in page.locator("#models tbody tr").first.inner_text()  # an interval beside each metric

    page.fill("#user-input", "1")
    page.click("#show-user")
    page.wait_for_selector("#user-view:not([hidden]) .model-list", timeout=20_000)
    lists = page.locator(".model-list")
    assert lists.count() == len(SERVED_MODELS) >= 3
    for i in range(lists.count()):
        assert lists.nth(i).locator("li").count() == 10
    assert page.locator("#history tbody tr").count() == 10
    assert page.locator("#user-id").inner_text() == "1"

    page.locator(".model-list[data-model=als] li").first.click()  # similar movies by the ALS factors
    page.wait_for_selector("#similar-view:not([hidden]) #similar-list li", timeout=20_000)
    assert page.locator("#similar-list li").count() == 10

    page.fill("#user-input", "abc")
    page.click("#show-user")
    assert page.locator("#error").inner_text() == "a userId is a number"

    screenshot = tmp_path / "serve_page.png"
    page.locator("#user-input").fill("1")
    page.click("#show-user")
    page.wait_for_selector("#error[hidden]", state="attached")
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
    assert errors == []
    page.close()


def test_a_held_out_item_a_model_found_is_highlighted(browser, served_url):
    """The first user whose test item one of the models ranked in its top-10 (asked of the API itself)."""
    import json
    import urllib.request

    def get(path):
        with urllib.request.urlopen(served_url + path, timeout=10) as response:
            return json.loads(response.read())

    found = None
    for user in range(1, 200):
        for model in SERVED_MODELS:
            rank = get(f"/users/{user}/recommendations?model={model}&k=10")["held_out_rank"]
            if rank:
                found = (user, model, rank)
                break
        if found:
            break
    assert found, "no model found a held-out item for the first 200 users"
    user, model, rank = found
    page = browser.new_page()
    page.goto(f"{served_url}/?user={user}")
    page.wait_for_selector(f".model-list[data-model={model}] li.hit", timeout=20_000)
    hit = page.locator(f".model-list[data-model={model}] li")
    assert "hit" in hit.nth(rank - 1).get_attribute("class")
    assert page.locator(f".model-list[data-model={model}] .badge").inner_text() == f"test item at {rank}"
    page.close()


def test_choose_models_and_run_date_search_titles_and_see_the_drift(browser, served_url):
    import json
    import urllib.request

    from serve_warehouse import EARLIER

    def get(path):
        with urllib.request.urlopen(served_url + path, timeout=10) as response:
            return json.loads(response.read())

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served_url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)

    # each model's paired NDCG@10 difference to AR(2), with its interval; AR(2) itself is the reference
    assert page.locator("#paired-head").inner_text() == "NDCG@10 − AR(2) (paired)"
    paired = {m["name"]: next(x for x in m["metrics"] if x["metric"] == "ndcg_minus_ar2" and x["k"] == 10)
              for m in get("/models")["models"] if m["name"] != "ar2"}
    for name, row in paired.items():
        cell = page.locator(f"#models tbody tr[data-model={name}] td.paired").inner_text()
        assert cell.startswith(f"{row['value']:+.4f}".replace("+-", "-")) and f"{row['ci_low']:+.4f}" in cell, cell
    assert page.locator("#models tbody tr[data-model=ar2] td.paired").inner_text() == "reference"

    # choose which models to show: the unticked one leaves the comparison and the lists
    page.uncheck("#model-picks input[value=markov]")
    assert page.locator("#models tbody tr[data-model=markov]").is_hidden()
    page.fill("#user-input", "1")
    page.click("#show-user")
    page.wait_for_selector("#user-view:not([hidden]) .model-list", timeout=20_000)
    assert page.locator(".model-list[data-model=markov]").is_hidden()
    assert page.locator(".model-list[data-model=ar2]").is_visible()

    # an earlier run date: popularity has one, the others say they do not
    page.select_option("#run-date", EARLIER.isoformat())
    page.wait_for_selector(".model-list[data-model=ar2] .note", timeout=20_000)
    assert page.locator(".model-list[data-model=popularity] li").count() == 10
    earlier = get(f"/users/1/recommendations?model=popularity&k=10&run_date={EARLIER}")
    assert page.locator(".model-list[data-model=popularity] li").first.inner_text().startswith(
        earlier["items"][0]["title"])

    # movies by title
    page.fill("#movie-input", "toy story")
    page.wait_for_selector("#movie-results li", timeout=20_000)
    found = get("/movies?q=toy%20story&limit=30")
    assert page.locator("#movie-results li").count() == len(found["movies"]) >= 3
    assert page.locator("#movie-results li .title").first.inner_text().startswith(found["movies"][0]["title"])

    # the real-time panel: two picked movies, and the lists scored now update; a model without a checkpoint here
    # (sasrec) says so in its card
    def posted(history):
        request = urllib.request.Request(served_url + "/recommendations", method="POST",
                                         data=json.dumps({"model": "ar2", "history": history, "k": 10}).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return [m["title"] for m in json.loads(response.read())["items"]]

    picked = [m["movieId"] for m in found["movies"][:2]]
    page.locator("#movie-results li button.add").nth(0).click()
    page.wait_for_selector(".rt-list[data-model=ar2] li", timeout=20_000)
    page.locator("#movie-results li button.add").nth(1).click()
    page.wait_for_function("document.querySelectorAll('#rt-history li').length === 2")
    expected = posted(picked)
    page.wait_for_function(
        f"(document.querySelector('.rt-list[data-model=ar2] li') || {{}}).textContent?.startsWith({json.dumps(expected[0])})",
        timeout=20_000)
    shown = page.locator(".rt-list[data-model=ar2] li").all_inner_texts()
    assert len(shown) == len(expected) > 0 and all(text.startswith(title) for text, title in zip(shown, expected))
    assert page.locator(".rt-list[data-model=markov] li").count() > 0
    assert "checkpoint" in page.locator(".rt-list[data-model=sasrec] .note").inner_text()
    page.locator("#rt-history li").nth(0).click()  # remove the first pick: the lists follow
    expected = posted(picked[1:])
    page.wait_for_function("document.querySelectorAll('#rt-history li').length === 1")
    page.wait_for_function(
        f"(document.querySelector('.rt-list[data-model=ar2] li') || {{}}).textContent?.startsWith({json.dumps(expected[0])})",
        timeout=20_000)

    # the drift panel: the drift table's rows of the newest run, warnings highlighted
    drift = get("/drift")
    page.wait_for_selector("#drift-table tbody tr", timeout=20_000)
    assert page.locator("#drift-table tbody tr").count() == len(drift["rows"])
    assert page.locator("#drift-table tbody tr.warn").count() == len(drift["warnings"])
    assert page.locator("#drift-table tr[data-metric=list_overlap]").count() == 1
    assert errors == []
    page.close()
