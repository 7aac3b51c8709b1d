"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Playwright's own browser download cannot be reached from these machines, so the test launches
the system Chromium by path (``tools/setup_browser.sh`` installs it); it skips, saying why, only
where no Chromium can be had. The screenshot is kept under ``runs/serve/page.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from .conftest import REPO, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    for cand in (os.environ.get("KSEG_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if cand and Path(cand).is_file():
            return cand
    pytest.skip(
        "no Chromium found (apt-get install chromium, or set KSEG_CHROMIUM); "
        "tools/setup_browser.sh installs it"
    )


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright missing: pip install playwright (tools/setup_browser.sh does)",
    )
    exe = _chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _api(served, png: bytes, threshold: float, **params) -> dict:
    r = httpx.post(
        f"{served}/v1/segment",
        files={"file": ("sample.png", png, "image/png")},
        params={"threshold": threshold, **params},
        headers=AUTH,
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def test_page_shows_the_overlay_and_the_apis_area(browser, served, sample_png, tmp_path):
    sample = tmp_path / "sample.png"
    sample.write_bytes(sample_png)
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    offsite: list[str] = []
    page.on(
        "request",
        lambda req: (
            None if req.url.startswith((served, "blob:", "data:")) else offsite.append(req.url)
        ),
    )
    page.goto(served + "/")
    # the service wants a token: the page asks for it after the first 401
    page.wait_for_selector("#token-box:not([hidden])", timeout=15000)
    page.fill("#token", TOKEN)
    page.click("#token-save")
    page.wait_for_function(
        "document.getElementById('model-name').textContent.includes('tiny_float')", timeout=15000
    )
    page.set_input_files("#file", str(sample))
    page.wait_for_selector("#canvas[data-overlay=ready]", timeout=30000)
    page.wait_for_selector("#status[data-state=done]", timeout=30000)

    threshold = float(page.input_value("#threshold"))
    api = _api(served, sample_png, threshold)
    area_text = page.text_content("#area-px").replace(",", "")
    assert int(area_text) == api["stats"]["area_px"] > 0
    # the mask the browser decoded and painted has exactly that many pixels
    assert int(page.get_attribute("#canvas", "data-mask-pixels")) == api["stats"]["area_px"]
    size = page.evaluate(
        "[document.getElementById('canvas').width, document.getElementById('canvas').height]"
    )
    assert size == [api["image"]["width"], api["image"]["height"]]

    # opacity slider: 100 % paints mask pixels pure red, 0 % shows the grey image there
    xy = _first_mask_pixel(api)
    for value, expect_red in (("100", True), ("0", False)):
        page.fill("#opacity", value)
        page.dispatch_event("#opacity", "input")
        rgba = page.evaluate(
            f"Array.from(document.getElementById('canvas').getContext('2d')"
            f".getImageData({xy[0]}, {xy[1]}, 1, 1).data)"
        )
        if expect_red:
            assert rgba[:3] == [255, 0, 0], rgba
        else:
            assert rgba[0] == rgba[1] == rgba[2], rgba  # the grey image itself
    page.fill("#opacity", "45")
    page.dispatch_event("#opacity", "input")
    shot = REPO / "runs" / "serve" / "page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # threshold slider: a new request, and the page again shows what the API says
    page.fill("#threshold", "0.4")
    page.dispatch_event("#threshold", "input")
    page.wait_for_function(
        "document.getElementById('threshold-used').textContent === '0.40'", timeout=30000
    )
    page.wait_for_selector("#status[data-state=done]", timeout=30000)
    api4 = _api(served, sample_png, 0.4)
    assert int(page.text_content("#area-px").replace(",", "")) == api4["stats"]["area_px"]
    assert api4["stats"]["area_px"] > api["stats"]["area_px"]

    # a pixel spacing gives the area in mm^2, as the API computes it
    page.fill("#spacing", "0.5")
    page.dispatch_event("#spacing", "change")
    page.wait_for_function(
        "!document.getElementById('area-mm2').textContent.startsWith('-')", timeout=30000
    )
    page.wait_for_selector("#status[data-state=done]", timeout=30000)
    api_mm = _api(served, sample_png, 0.4, pixel_spacing_mm=0.5)
    assert api_mm["stats"]["area_mm2"] == pytest.approx(0.25 * api4["stats"]["area_px"])
    shown = float(page.text_content("#area-mm2").replace(",", ""))
    assert shown == pytest.approx(api_mm["stats"]["area_mm2"], abs=0.005)

    # download buttons point at the mask and the GeoJSON
    assert page.get_attribute("#download-mask", "download") == "sample_mask.png"
    assert page.get_attribute("#download-geojson", "href").startswith("blob:")
    geo = page.evaluate(
        "fetch(document.getElementById('download-geojson').href).then(r => r.json())"
    )
    assert geo == api_mm["geojson"]

    assert not errors, errors
    assert not offsite, offsite
    page.close()


def _first_mask_pixel(api: dict) -> tuple[int, int]:
    """(x, y) of a mask pixel away from the outline (the overlay draws no outline; any will do)."""
    import base64

    import cv2
    import numpy as np

    m = cv2.imdecode(np.frombuffer(base64.b64decode(api["mask_png_base64"]), np.uint8), 0) > 0
    ys, xs = np.nonzero(m)
    return int(xs[0]), int(ys[0])
