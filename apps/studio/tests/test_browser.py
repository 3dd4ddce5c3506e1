"""The studio end to end in headless Chromium (Playwright driving the Debian ``chromium``):
sample -> keep -> re-sample -> draw a mask -> inpaint, and text infill, checked by screenshots
compared loosely (mean pixel differences) and by what the page shows."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def page(live_server):
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (`apt-get install -y chromium`; .ci/run does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with live_server() as server, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(60_000)
        page.base_url = server.url
        yield page
        browser.close()


def shot(page, selector: str) -> np.ndarray:
    """A grey screenshot of one element, once every image on the page is decoded."""
    page.wait_for_function(
        "[...document.images].every((i) => !i.getAttribute('src') || (i.complete && i.naturalWidth))"
    )
    png = page.locator(selector).screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def test_sample_keep_resample_and_inpaint_in_the_browser(page):
    page.goto(f"{page.base_url}/?model=image")
    page.wait_for_selector("body[data-ready]")
    page.fill("#n", "4")
    page.fill("#steps", "4")
    page.click("#sample")
    page.wait_for_selector("body[data-samples='1']:not([data-busy])")
    assert page.locator(".slot img").count() == 4
    first = [shot(page, f"#slot-{i} img") for i in range(4)]
    assert min(differ(first[0], first[i]) for i in (1, 2, 3)) > 2  # four different draws

    page.click("#slot-0 .keep")
    assert "kept" in page.get_attribute("#slot-0", "class")
    page.click("#resample")
    page.wait_for_selector("body[data-samples='2']:not([data-busy])")
    second = [shot(page, f"#slot-{i} img") for i in range(4)]
    assert differ(first[0], second[0]) < 0.5  # the kept slot, as it was
    assert all(differ(first[i], second[i]) > 2 for i in (1, 2, 3))  # the rest redrawn

    page.click("#slot-1 .edit")
    page.wait_for_selector("#editor:not([hidden])")
    before = shot(page, "#slot-1 img")
    box = page.locator("#canvas").bounding_box()
    for x in (20, 60, 100):  # brush 48 px of 256: the left half of the 8x8 image
        page.mouse.move(box["x"] + x, box["y"] + 2)
        page.mouse.down()
        for y in range(2, 256, 16):
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()
    painted = shot(page, "#canvas")
    assert painted[:, :100].mean() != painted[:, 160:].mean()  # the mask shows where drawn
    page.click("#inpaint")
    page.wait_for_selector("body[data-edits='1']:not([data-busy])")
    after = shot(page, "#slot-1 img")
    half = after.shape[1] // 2
    assert differ(before[:, half + 2 :], after[:, half + 2 :]) < 0.5  # unmasked: kept
    assert differ(before[:, : half - 2], after[:, : half - 2]) > 3  # masked: repainted
    assert "error" not in (page.get_attribute("#status", "class") or "")


def test_text_infill_in_the_browser(page):
    page.goto(f"{page.base_url}/?model=text")
    page.wait_for_selector("body[data-ready]")
    assert page.is_visible("#text-panel") and not page.is_visible("#image-panel")
    page.fill("#template", "To be, or [MASK*5] to be")
    page.fill("#text-steps", "5")
    page.click("#infill")
    page.wait_for_selector("#filled[data-done]")
    text = page.inner_text("#filled")
    assert text.startswith("To be, or ") and text.endswith(" to be")
    assert "[MASK" not in text


def test_audio_play_and_redraw_a_span_in_the_browser(page):
    page.goto(f"{page.base_url}/?model=audio")
    page.wait_for_selector("body[data-ready]")
    assert page.is_visible("#audio-panel") and not page.is_visible("#image-panel")
    page.fill("#audio-n", "2")
    page.fill("#audio-steps", "3")
    page.select_option("#audio-label", "hi")
    page.click("#audio-sample")
    page.wait_for_selector("body[data-audio='1']:not([data-busy])")
    assert page.locator(".clip audio").count() == 2
    # the players hold real sound: the browser decodes the WAV and knows its length
    page.wait_for_function(
        "[...document.querySelectorAll('.clip audio')].every((a) => a.duration > 0)"
    )
    duration = page.evaluate("document.querySelector('#clip-0 audio').duration")
    assert 0.1 < duration < 5
    before = shot(page, "#clip-0 img")
    other = shot(page, "#clip-1 img")
    page.fill("#clip-0 .start", "0")
    page.fill("#clip-0 .end", "0.05")
    page.click("#clip-0 .redraw")
    page.wait_for_selector("body[data-redraws='1']:not([data-busy])")
    after = shot(page, "#clip-0 img")
    width = after.shape[1]
    assert differ(before[:, width // 2 :], after[:, width // 2 :]) < 0.5  # after the span: kept
    assert differ(before[:, : width // 8], after[:, : width // 8]) > 1  # the span: redrawn
    assert differ(other, shot(page, "#clip-1 img")) < 0.5  # the other clip: untouched
    assert "error" not in (page.get_attribute("#status", "class") or "")


def test_protein_motif_scaffolding_in_the_browser(page):
    page.goto(f"{page.base_url}/?model=protein")
    page.wait_for_selector("body[data-ready]")
    assert page.is_visible("#protein-panel")
    page.fill("#protein-n", "3")
    page.select_option("#protein-family", "kunitz")
    page.fill("#protein-length", "14")
    page.fill("#protein-motif", "3-6:WYKL")
    page.click("#protein-sample")
    page.wait_for_selector("body[data-proteins='1']:not([data-busy])")
    rows = [page.inner_text(f"#sequence-{i}") for i in range(3)]
    assert all(len(r) == 14 and r[2:6] == "WYKL" for r in rows), rows
    assert page.locator("#sequence-0 mark").count() == 4  # the motif, highlighted
