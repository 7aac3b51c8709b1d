"""A real ``kseg serve`` process on a free loopback port, called over HTTP."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import pytest

from .conftest import TOKEN, bad_requests

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_process_serves_the_same_mask_as_the_library(served, tiny_tflite, sample_image, sample_png):
    from kseg.inference import InferenceOptions, load_predictor, segment_image

    r = httpx.post(f"{served}/v1/segment", content=sample_png, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    mask = cv2.imdecode(np.frombuffer(base64.b64decode(body["mask_png_base64"]), np.uint8), 0)
    ref = segment_image(
        load_predictor(tiny_tflite["float"], num_threads=1),
        sample_image[..., None],
        InferenceOptions(),
    )
    np.testing.assert_array_equal(mask > 0, ref.mask > 0)
    assert body["stats"]["area_px"] == ref.stats()["area_px"]
    card = httpx.get(f"{served}/v1/model", headers=AUTH).json()
    assert card["workers"] == 2 and card["name"] == "tiny_float.tflite"


@pytest.mark.parametrize("case", list(bad_requests(b"")))
def test_bad_request_corpus_over_http(served, sample_png, case):
    kwargs, status, word = bad_requests(sample_png)[case]
    r = httpx.post(f"{served}/v1/segment", timeout=30, **kwargs)
    assert r.status_code == status, (case, r.text)
    assert word.lower() in r.json()["error"].lower()
    ok = httpx.post(f"{served}/v1/segment", content=sample_png, headers=AUTH, timeout=30)
    assert ok.status_code == 200


def test_listens_on_loopback_only(served):
    assert served.startswith("http://127.0.0.1:")
    import socket

    port = int(served.rsplit(":", 1)[1])
    addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    for addr in addrs - {"127.0.0.1"}:
        with socket.socket() as s:
            s.settimeout(1.0)
            assert s.connect_ex((addr, port)) != 0, f"reachable on {addr}"
