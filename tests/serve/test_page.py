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


def test_page_legend_and_colours_for_a_multiclass_model(
    browser, served_multiclass, sample_png, tmp_path
):
    """A 3-class model: the legend lists the class names with their colours, each class is
    painted in its colour, the per-class table shows what the API answers, and the threshold
    control (which argmax ignores) is hidden."""
    import base64

    import cv2
    import numpy as np

    served = served_multiclass
    sample = tmp_path / "sample.png"
    sample.write_bytes(sample_png)
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served + "/")
    page.wait_for_selector("#legend:not([hidden]) li", timeout=15000)
    legend = page.evaluate(
        "Array.from(document.querySelectorAll('#legend li')).map(li => [li.dataset.classId, "
        "li.querySelector('.name').textContent, getComputedStyle(li.querySelector('.swatch'))"
        ".backgroundColor])"
    )
    assert legend == [["1", "nerve", "rgb(255, 0, 0)"], ["2", "vessel", "rgb(0, 160, 255)"]]
    assert page.is_hidden("#threshold-box")

    page.set_input_files("#file", str(sample))
    page.wait_for_selector("#canvas[data-overlay=ready]", timeout=30000)
    page.wait_for_selector("#status[data-state=done]", timeout=30000)
    r = httpx.post(
        f"{served}/v1/segment", files={"file": ("sample.png", sample_png, "image/png")}, timeout=30
    )
    api = r.json()
    labels = cv2.imdecode(np.frombuffer(base64.b64decode(api["mask_png_base64"]), np.uint8), 0)
    labels = labels // 127
    rows = page.evaluate(
        "Array.from(document.querySelectorAll('#class-stats tbody tr')).map(tr => "
        "Array.from(tr.cells).map(td => td.textContent))"
    )
    per = api["stats"]["classes"]
    assert rows == [
        ["nerve", f"{per['1']['area_px']:,}", "-", str(per["1"]["component_count"])],
        ["vessel", f"{per['2']['area_px']:,}", "-", str(per["2"]["component_count"])],
    ]
    assert int(page.get_attribute("#canvas", "data-mask-pixels")) == api["stats"]["area_px"]
    assert "nerve" in page.text_content("#status") and "vessel" in page.text_content("#status")
    assert page.text_content("#threshold-used") == "argmax over 3 classes"

    # opacity 100 %: a pixel inside each class shows exactly that class's legend colour
    page.fill("#opacity", "100")
    page.dispatch_event("#opacity", "input")
    for cid, rgb in ((1, [255, 0, 0]), (2, [0, 160, 255])):
        inner = cv2.erode((labels == cid).astype(np.uint8), np.ones((3, 3), np.uint8))
        ys, xs = np.nonzero(inner)
        x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
        rgba = page.evaluate(
            f"Array.from(document.getElementById('canvas').getContext('2d')"
            f".getImageData({x}, {y}, 1, 1).data)"
        )
        assert rgba[:3] == rgb, (cid, rgba)
    page.fill("#opacity", "55")
    page.dispatch_event("#opacity", "input")
    shot = REPO / "runs" / "serve" / "page_multiclass.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    geo = page.evaluate(
        "fetch(document.getElementById('download-geojson').href).then(r => r.json())"
    )
    assert {f["properties"]["class_name"] for f in geo["features"]} == {"nerve", "vessel"}
    assert not errors, errors
    page.close()
