"""The service in-process (FastAPI TestClient): answers equal the library's, limits and errors."""

from __future__ import annotations

import base64
import threading

import cv2
import numpy as np
import pytest

from kseg.serve import ServeSettings, create_app

from .conftest import MAX_PIXELS, MAX_UPLOAD, TOKEN, bad_requests, png_bytes

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def app(tiny_tflite):
    settings = ServeSettings(token=TOKEN, max_upload_bytes=MAX_UPLOAD, max_pixels=MAX_PIXELS)
    return create_app(tiny_tflite["int8"], settings)


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _mask(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)


def _direct(model_path, image, **opts):
    from kseg.inference import InferenceOptions, load_predictor, segment_image

    return segment_image(load_predictor(model_path, num_threads=1), image, InferenceOptions(**opts))


def test_segment_json_equals_the_library_on_the_same_image(
    client, tiny_tflite, sample_image, sample_png
):
    r = client.post("/v1/segment", content=sample_png, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    h, w = sample_image.shape
    assert body["image"] == {"name": None, "format": "png", "width": w, "height": h}
    mask = _mask(body["mask_png_base64"])
    assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
    ref = _direct(tiny_tflite["int8"], sample_image[..., None])
    np.testing.assert_array_equal(mask > 0, ref.mask > 0)
    assert body["stats"]["area_px"] == int((mask > 0).sum()) == ref.stats()["area_px"]
    assert 0 < body["stats"]["area_px"] < h * w  # the tiny model marks some pixels, not all
    assert body["threshold"] == pytest.approx(0.5)  # the card's
    assert body["geojson"]["type"] == "FeatureCollection"
    assert body["geojson"] == ref.geojson()
    assert "Server-Timing" in r.headers


def test_multipart_and_raw_body_give_the_same_answer(client, sample_png):
    raw = client.post("/v1/segment", content=sample_png, headers=AUTH).json()
    form = client.post(
        "/v1/segment", files={"file": ("scan 1.png", sample_png, "image/png")}, headers=AUTH
    ).json()
    assert form["image"]["name"] == "scan 1.png"
    assert form["mask_png_base64"] == raw["mask_png_base64"]
    assert form["stats"] == raw["stats"]


def test_content_type_and_name_do_not_decide_the_format(client, sample_image):
    jpg = cv2.imencode(".jpg", sample_image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    r = client.post("/v1/segment", files={"file": ("scan.png", jpg, "image/png")}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["image"]["format"] == "jpeg"


def test_threshold_query_overrides_the_card_and_shrinks_the_mask(client, sample_png):
    areas = []
    for t in (0.2, 0.5, 0.8):
        body = client.post(
            "/v1/segment", content=sample_png, headers=AUTH, params={"threshold": t}
        ).json()
        assert body["threshold"] == pytest.approx(t)
        areas.append(body["stats"]["area_px"])
    assert areas[0] > areas[1] > areas[2]


def test_postprocessing_options_reach_the_library(client, tiny_tflite, sample_image, sample_png):
    params = {"min_size": 20, "fill_holes": "true", "threshold": 0.3}
    body = client.post("/v1/segment", content=sample_png, headers=AUTH, params=params).json()
    ref = _direct(
        tiny_tflite["int8"], sample_image[..., None], threshold=0.3, min_size=20, fill_holes=True
    )
    np.testing.assert_array_equal(_mask(body["mask_png_base64"]) > 0, ref.mask > 0)
    plain = client.post("/v1/segment", content=sample_png, headers=AUTH, params={"threshold": 0.3})
    assert plain.json()["stats"]["component_count"] >= body["stats"]["component_count"]
    assert body["options"]["min_size"] == 20 and body["options"]["fill_holes"] is True


def test_png_and_overlay_formats(client, sample_image, sample_png):
    j = client.post("/v1/segment", content=sample_png, headers=AUTH).json()
    r = client.post("/v1/segment", content=sample_png, headers=AUTH, params={"format": "png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(_mask(base64.b64encode(r.content)), _mask(j["mask_png_base64"]))
    r = client.post(
        "/v1/segment", content=sample_png, headers=AUTH, params={"format": "overlay", "alpha": 1.0}
    )
    ov = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert ov.shape == (*sample_image.shape, 3)
    inside = cv2.erode((_mask(j["mask_png_base64"]) > 0).astype(np.uint8), np.ones((3, 3))) > 0
    outside = _mask(j["mask_png_base64"]) == 0
    assert inside.any()
    # alpha 1: red (or the yellow outline) inside the mask, the grey image untouched outside
    assert (ov[inside][:, 2] == 255).all() and (ov[inside][:, 0] == 0).all()
    np.testing.assert_array_equal(ov[outside][:, 0], sample_image[outside])


def test_model_card_health_docs_and_page(client):
    card = client.get("/v1/model", headers=AUTH).json()
    assert card["name"] == "tiny_int8.tflite"
    assert (card["input_size"], card["channels"]) == (32, 1)
    assert card["card"]["format"].startswith("kseg-model-card/")
    assert card["limits"] == {
        "max_upload_bytes": MAX_UPLOAD,
        "max_pixels": MAX_PIXELS,
        "token_required": True,
        "workers": 1,
        "max_queue": 16,
        "formats": ["png", "jpeg", "bmp", "tiff"],
    }
    assert client.get("/healthz").json()["status"] == "ok"  # open without the token
    schema = client.get("/openapi.json").json()
    seg = schema["paths"]["/v1/segment"]["post"]
    assert "multipart/form-data" in seg["requestBody"]["content"]
    assert {p["name"] for p in seg["parameters"]} >= {"threshold", "format", "tile", "min_size"}
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for ref in ("/static/app.js", "/static/style.css"):
        assert ref in page.text
        assert client.get(ref).status_code == 200
    for text in (page.text, client.get("/static/app.js").text):  # no CDN, nothing off the host
        assert "https://" not in text and "http://" not in text


@pytest.mark.parametrize("case", list(bad_requests(b"")))
def test_bad_request_corpus_gets_its_4xx_and_service_keeps_serving(client, sample_png, case):
    kwargs, status, word = bad_requests(sample_png)[case]
    r = client.post("/v1/segment", **kwargs)
    assert r.status_code == status, (case, r.text)
    err = r.json()["error"]
    assert word.lower() in err.lower() and "\n" not in err and "Traceback" not in err
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    ok = client.post("/v1/segment", content=sample_png, headers=AUTH)
    assert ok.status_code == 200


def test_chunked_body_over_the_limit_is_cut_off(client, sample_png):
    sent = []

    def chunks():
        for _ in range(64):
            sent.append(1)
            yield b"\x00" * 16384

    r = client.post("/v1/segment", content=chunks(), headers=AUTH)
    assert r.status_code == 413
    assert "limit" in r.json()["error"]


def test_unknown_route_and_method_are_json(client):
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = client.get("/v1/segment", headers=AUTH)
    assert r.status_code == 405 and "error" in r.json()


def test_unexpected_failure_is_a_500_json_line_and_the_next_request_works(
    client, sample_png, monkeypatch
):
    import kseg.inference

    real = kseg.inference.segment_image
    monkeypatch.setattr(kseg.inference, "segment_image", lambda *a, **k: 1 / 0)
    r = client.post("/v1/segment", content=sample_png, headers=AUTH)
    assert r.status_code == 500
    assert r.json() == {"error": "internal error (ZeroDivisionError); the server log has details"}
    monkeypatch.setattr(kseg.inference, "segment_image", real)
    assert client.post("/v1/segment", content=sample_png, headers=AUTH).status_code == 200


def test_workers_each_own_one_interpreter_and_agree(tiny_tflite, sample_png):
    from fastapi.testclient import TestClient

    app = create_app(tiny_tflite["int8"], ServeSettings(workers=3))
    results, errors = [], []

    def call(c):
        try:
            for _ in range(6):
                results.append(c.post("/v1/segment", content=sample_png).json()["mask_png_base64"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with TestClient(app) as c:
        threads = [threading.Thread(target=call, args=(c,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    engine = app.state.engine
    assert not errors and len(results) == 24 and len(set(results)) == 1
    assert 1 <= engine.loaded <= 3
    owners = {id(p) for p in engine._spare} | {id(engine.reference)}
    assert len(owners) == 1  # the start-up predictor was handed to a thread, not duplicated


def test_no_token_setting_means_open(tiny_tflite, sample_png):
    from fastapi.testclient import TestClient

    with TestClient(create_app(tiny_tflite["float"])) as c:
        assert (
            c.post("/v1/segment", content=png_bytes(np.zeros((40, 40), np.uint8))).status_code
            == 200
        )
        assert c.get("/v1/model").json()["limits"]["token_required"] is False


def test_bad_model_fails_before_serving(tmp_path):
    from kseg.errors import KsegError

    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a model at all, certainly")
    with pytest.raises(KsegError, match="broken.tflite"):
        create_app(bad)


def test_a_full_queue_answers_503_at_once_and_serving_resumes(tiny_tflite, sample_png, monkeypatch):
    """One worker, no queue: while a request is being segmented, the next one is refused with a
    503 and Retry-After (not left waiting), and is answered once the worker is free again."""
    from fastapi.testclient import TestClient

    import kseg.inference

    real, started, release = kseg.inference.segment_image, threading.Event(), threading.Event()

    def held(*a, **k):
        started.set()
        assert release.wait(30)
        return real(*a, **k)

    app = create_app(tiny_tflite["int8"], ServeSettings(workers=1, max_queue=0))
    with TestClient(app) as c:
        monkeypatch.setattr(kseg.inference, "segment_image", held)
        first: list = []
        t = threading.Thread(target=lambda: first.append(c.post("/v1/segment", content=sample_png)))
        t.start()
        assert started.wait(30)
        busy = c.post("/v1/segment", content=sample_png)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"].startswith(
            "busy: 1 requests in progress (1 worker(s), 0 queued)"
        )
        assert c.get("/healthz").json()["in_flight"] == 1
        release.set()
        t.join(30)
        assert first[0].status_code == 200
        assert c.post("/v1/segment", content=sample_png).status_code == 200
        health = c.get("/healthz").json()
        assert health["in_flight"] == 0 and health["refused_busy"] == 1
        assert c.get("/v1/model").json()["limits"]["max_queue"] == 0


def test_multiclass_answer_names_and_colours_every_class(tiny_multiclass, sample_image, sample_png):
    """A 3-class model: /v1/model lists the classes with names and colours; the JSON answer has
    statistics per class (names, areas that add up to the mask's) and GeoJSON features carrying
    their class id and name; the overlay paints each class in its legend colour."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(tiny_multiclass), raise_server_exceptions=False) as c:
        card = c.get("/v1/model").json()
        assert card["num_classes"] == 3
        assert card["class_names"] == ["background", "nerve", "vessel"]
        assert card["classes"] == [
            {"id": 1, "name": "nerve", "colour": "#ff0000"},
            {"id": 2, "name": "vessel", "colour": "#00a0ff"},
        ]
        body = c.post("/v1/segment", content=sample_png).json()
        over = c.post("/v1/segment", content=sample_png, params={"format": "overlay", "alpha": 1})
    assert body["classes"] == card["classes"] and body["num_classes"] == 3
    mask = _mask(body["mask_png_base64"])  # class ids spread over 0..255: 0, 127, 254
    assert set(np.unique(mask)) == {0, 127, 254}
    labels = mask // 127
    ref = _direct(tiny_multiclass, sample_image[..., None])
    np.testing.assert_array_equal(labels, ref.mask)
    per = body["stats"]["classes"]
    assert [per["1"]["name"], per["2"]["name"]] == ["nerve", "vessel"]
    for cid in (1, 2):
        assert per[str(cid)]["area_px"] == int((labels == cid).sum()) > 100
    assert per["1"]["area_px"] + per["2"]["area_px"] == body["stats"]["area_px"]
    assert body["stats"]["class_names"] == ["background", "nerve", "vessel"]
    feats = body["geojson"]["features"]
    assert {(f["properties"]["class"], f["properties"]["class_name"]) for f in feats} == {
        (1, "nerve"),
        (2, "vessel"),
    }
    for cid in (1, 2):
        area = sum(f["properties"]["area_px"] for f in feats if f["properties"]["class"] == cid)
        assert area == per[str(cid)]["area_px"]
        assert per[str(cid)]["component_count"] == sum(
            f["properties"]["class"] == cid for f in feats
        )
    ov = cv2.cvtColor(cv2.imdecode(np.frombuffer(over.content, np.uint8), 1), cv2.COLOR_BGR2RGB)
    inner = cv2.erode((labels == 2).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert inner.any() and (ov[inner] == [0, 160, 255]).all()  # alpha 1: the vessel colour
    inner = cv2.erode((labels == 1).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert inner.any() and (ov[inner] == [255, 0, 0]).all()
