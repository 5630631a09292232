"""The built-in service under the real gunicorn on loopback: answers equal to `infer`'s, limits, metrics, SIGTERM,
and the upload page in a real headless Chromium."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from _serving import IMAGES, ROOT, assert_same_record, free_port, infer_records, run_cli

pytest.importorskip("flask", reason="flask is not installed")
pytest.importorskip("gunicorn", reason="gunicorn is not installed")


class Server:
    """`python -m zoo.yolov5 serve ...` in its own process group, stopped by the test."""

    def __init__(self, *flags, log: Path, family: str = "yolov5"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-m", f"zoo.{family}", "serve", "--port", str(self.port),
                                         *map(str, flags)], cwd=ROOT, env=env, stdout=open(log, "wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited:\n{log.read_text()[-3000:]}"
            try:
                if request(f"{self.url}/health", timeout=2)[0] == 200:
                    return
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"serve not ready in 120 s:\n{log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 120):
    """(status, headers, body) without raising for HTTP errors."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def predict(url: str, data: bytes, query: str = "") -> tuple[int, dict, dict]:
    status, headers, body = request(f"{url}/v1/predict{query}", data, {"Content-Type": "application/octet-stream"})
    return status, headers, json.loads(body)


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, dict]:
    boundary = "zoo-test-boundary-7f3a"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    run_cli("yolov5", "build", "--input-size", "128", "--batch", "1:4:8", "-o", tmp / "y5n.engine")
    return tmp / "y5n.engine", infer_records("yolov5", tmp / "y5n.engine", tmp / "infer")


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    server = Server("--engine", engine[0], "--workers", 2, "--max-batch", 8, "--max-delay-ms", 20,
                    "--max-upload-mb", 1, "--max-pixels", 4_000_000,
                    log=tmp_path_factory.mktemp("serve-log") / "serve.log")
    yield server
    assert server.stop() == 0, server.log.read_text()[-3000:]


def test_threads_times_images_equal_infer(server, engine):
    expected = engine[1]
    jobs = [path for _ in range(4) for path in sorted(IMAGES.iterdir())]  # 4 threads x 6 images
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: (p.name, predict(server.url, p.read_bytes(), f"?name={p.name}")), jobs))
    for name, (status, _, record) in answers:
        assert status == 200, record
        assert record["file"] == name
        assert_same_record(record, expected[name])
    metrics = request(f"{server.url}/metrics")[2].decode()
    single = int(re.search(r'zoo_batch_size_bucket\{le="1"\} (\d+)', metrics).group(1))
    batches = int(re.search(r"zoo_batch_size_count (\d+)", metrics).group(1))
    assert single < batches, "the dynamic batcher never formed a batch of more than one image"


def test_multipart_upload_with_thresholds_equals_infer_with_them(server, engine, tmp_path):
    name = "street.jpg"
    run_cli("yolov5", "infer", "--engine", engine[0], "--source", IMAGES / name, "--out", tmp_path, "--conf", 0.9,
            "--iou", 0.3, "--no-draw")  # auto, as the server: ONNX Runtime on a CPU
    want = json.loads((tmp_path / "predictions.jsonl").read_text())
    body, headers = multipart("image", name, (IMAGES / name).read_bytes())
    status, _, raw = request(f"{server.url}/v1/predict?conf=0.9&iou=0.3", body, headers)
    assert status == 200
    got = json.loads(raw)
    assert got["file"] == name
    assert_same_record(got, want)
    assert len(got["detections"]) < len(engine[1][name]["detections"])  # the thresholds did apply


def test_limits_health_and_metrics(server):
    status, _, answer = predict(server.url, b"\xff" * (1 << 20 | 4096))  # the limit is 1 MiB
    assert status == 413 and "larger than the limit" in answer["error"]
    status, _, answer = predict(server.url, b"")
    assert status == 400 and "no image" in answer["error"]
    # (a GIF signature and nothing else: "GIF89a but not an image" now reads as a header of 25120 x 29813 pixels,
    # refused with 413 before decoding)
    status, _, answer = predict(server.url, b"GIF89a", "?name=bad.gif")
    assert status == 400 and answer["error"].startswith("bad.gif: not a decodable image")
    status, _, answer = predict(server.url, (IMAGES / "tiny.jpg").read_bytes(), "?conf=high")
    assert status == 400 and answer["error"].startswith("query parameter conf: 'high' is not a number")
    status, _, answer = predict(server.url, (IMAGES / "tiny.jpg").read_bytes(), "?confidence=0.5")
    assert status == 400 and "unknown query parameter 'confidence'" in answer["error"]
    status, _, body = request(f"{server.url}/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["variant"] == "yolov5n"
    status, headers, body = request(f"{server.url}/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_]+="[^"]*"(,[a-zA-Z_]+="[^"]*")*\})? [0-9.e+-]+$')
    for line in text.strip().splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    counts = {code: int(n) for code, n in re.findall(r'zoo_requests_total\{code="(\d+)"\} (\d+)', text)}
    assert counts["413"] >= 1 and counts["400"] >= 4
    assert int(re.search(r"zoo_request_errors_total (\d+)", text).group(1)) >= 5


def test_full_queue_gets_503_and_sigterm_finishes_requests_in_flight(tmp_path):
    # one worker, one image per engine call, two waiting: a burst of ten must overflow; 640 px keeps calls slow
    run_cli("yolov5", "build", "--input-size", "640", "--batch", "1:1:2", "-o", tmp_path / "slow.engine")
    server = Server("--engine", tmp_path / "slow.engine", "--workers", 1, "--max-batch", 1, "--max-queue", 2,
                    "--threads", 16, log=tmp_path / "serve.log")
    try:
        data = (IMAGES / "street.jpg").read_bytes()
        barrier = threading.Barrier(10)

        def burst(_):
            barrier.wait(timeout=30)
            return predict(server.url, data)

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(burst, range(10)))
        busy = [(h, r) for status, h, r in answers if status == 503]
        assert busy and all(h.get("Retry-After") == "1" and "server busy" in r["error"] for h, r in busy)
        assert all(status in (200, 503) for status, _, _ in answers)
        assert any(status == 200 for status, _, _ in answers)

        # two requests in flight (one running, one queued) when SIGTERM comes: both are answered
        with ThreadPoolExecutor(2) as pool:
            pending = [pool.submit(predict, server.url, data, "?name=late.jpg") for _ in range(2)]
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            finished = [f.result(timeout=120) for f in pending]
        assert [status for status, _, _ in finished] == [200, 200]
        assert all(record["file"] == "late.jpg" and "detections" in record for _, _, record in finished)
        assert server.process.wait(60) == 0
    finally:
        server.stop()


def _chromium():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


needs_chromium = pytest.mark.skipif(_chromium() is None, reason="needs Chromium and chromedriver (apt-get install "
                                    "chromium chromium-driver; .ci/run installs them)")


def _chrome():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,1600"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


@needs_chromium
def test_upload_page_in_headless_chromium(server, engine, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver = _chrome()
    try:
        driver.set_page_load_timeout(60)
        driver.get(server.url + "/")
        assert "yolov5n" in driver.title
        driver.find_element(By.ID, "image").send_keys(str(IMAGES / "street.jpg"))
        driver.find_element(By.ID, "send").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "status").text in ("done",) or
                                        d.find_element(By.ID, "status").text.startswith("error"))
        assert driver.find_element(By.ID, "status").text == "done"
        record = json.loads(driver.find_element(By.ID, "json").text)
        assert record["file"] == "street.jpg"
        assert_same_record(record, engine[1]["street.jpg"])
        result = driver.find_element(By.ID, "result")
        assert result.get_attribute("src").startswith("data:image/jpeg;base64,")
        # the annotated image decoded in the browser, at the upload's size
        width = driver.execute_script("return arguments[0].naturalWidth", result)
        assert width == cv2.imread(str(IMAGES / "street.jpg")).shape[1]
        driver.save_screenshot(str(tmp_path / "upload_page.png"))
    finally:
        driver.quit()


TASK_KEYS = {"detect": "box", "segment": "mask", "pose": "keypoints", "obb": "corners"}


@needs_chromium
def test_upload_page_shows_every_task(tmp_path):
    """One task of each kind through the page in a real browser: random YOLOv8n at 64 px for detect, segment,
    pose, obb and classify, and MTCNN (trained) for faces. conf is lowered on the page before running (where the
    model has it); the annotated image is the record drawn here; a row per result; the time of each stage."""
    import base64
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from zoo.assets import asset_path
    from zoo.vision.draw import draw_record
    street = IMAGES / "street.jpg"
    cases = {task: ("yolov8", ["--task", task, "--input-size", 64], street)
             for task in ("detect", "segment", "pose", "obb", "classify")}
    cases["faces"] = ("mtcnn", [], asset_path("astronaut"))
    start = lambda task: Server(*cases[task][1], "--workers", 1, "--threads", 4, "--max-batch", 1,
                                log=tmp_path / f"{task}.log", family=cases[task][0])
    with ThreadPoolExecutor(len(cases)) as pool:  # their start-ups (imports, the networks built) overlap
        started = {task: pool.submit(start, task) for task in cases}
    servers = {task: f.result() for task, f in started.items() if f.exception() is None}
    driver = None
    try:
        for task, future in started.items():
            assert future.exception() is None, f"{task}: {future.exception()}"
        driver = _chrome()
        driver.set_page_load_timeout(60)
        for task, server in servers.items():
            photo_path = cases[task][2]
            photo = cv2.imread(str(photo_path))
            try:
                driver.get(server.url + "/")
                if task in TASK_KEYS:
                    conf = driver.find_element(By.ID, "conf")
                    conf.clear()
                    conf.send_keys("0.2")
                driver.find_element(By.ID, "image").send_keys(str(photo_path))
                driver.find_element(By.ID, "send").click()
                WebDriverWait(driver, 300).until(lambda d: d.find_element(By.ID, "status").text == "done" or
                                                 d.find_element(By.ID, "status").text.startswith("error"))
                assert driver.find_element(By.ID, "status").text == "done", task
                record = json.loads(driver.find_element(By.ID, "json").text)
                assert record["file"] == photo_path.name
                if task == "classify":
                    items = record["top"]
                    assert len(items) == 5
                elif task == "faces":
                    items = record["faces"]
                    assert len(items) == 1 and len(items[0]["landmarks"]) == 5, items  # the astronaut
                else:
                    items = record["detections"]
                    assert items and all(TASK_KEYS[task] in d for d in items), (task, items[:1])
                    assert min(d["score"] for d in items) < 0.25  # the page's conf, not the default, applied
                rows = driver.find_elements(By.CSS_SELECTOR, "#results tr")
                assert len(rows) == len(items) + 1, task
                stages = [r.find_elements(By.TAG_NAME, "td")[0].text
                          for r in driver.find_elements(By.CSS_SELECTOR, "#stages tr")[1:]]
                assert stages == ["decode", "queue", "preprocess", "network", "postprocess", "draw", "total"]
                # the picture is the record drawn by zoo.vision.draw (JPEG-close), and something is drawn
                src = driver.find_element(By.ID, "result").get_attribute("src")
                shown = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
                want = draw_record(photo, record).astype(np.int16)
                changed = (want != photo).any(axis=-1)
                assert changed.sum() > 50, task
                off_drawing = np.abs(shown.astype(np.int16) - want)[changed].mean()
                off_photo = np.abs(shown.astype(np.int16) - photo.astype(np.int16))[changed].mean()
                assert off_drawing < 0.75 * off_photo, (task, off_drawing, off_photo)
                driver.save_screenshot(str(tmp_path / f"page_{task}.png"))
            finally:
                assert server.stop() == 0, server.log.read_text()[-2000:]
    finally:
        if driver is not None:
            driver.quit()
        for server in servers.values():
            server.stop()


# ---------------------------------------------------------------------------------------------- hostile clients
def test_one_bad_request_does_not_fail_its_batch(server):
    """Five requests at once, one with a value out of range: it alone gets 400 (three rounds)."""
    data = (IMAGES / "street.jpg").read_bytes()
    for _ in range(3):
        barrier = threading.Barrier(5)

        def send(query):
            barrier.wait(timeout=30)
            return predict(server.url, data, query)

        queries = ["", "", "?max_det=99999999999", "", ""]
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(send, queries))
        assert [status for status, _, _ in answers] == [200, 200, 400, 200, 200], answers
        assert "max_det" in answers[2][2]["error"]


@pytest.mark.parametrize("query, field, allowed", [
    ("conf=nan", "conf", "[0, 1]"), ("conf=inf", "conf", "[0, 1]"), ("conf=-1", "conf", "[0, 1]"),
    ("conf=1e400", "conf", "[0, 1]"), ("iou=2", "iou", "[0, 1]"), ("max_det=-1", "max_det", "[1, 100000]"),
    ("max_det=99999999999", "max_det", "[1, 100000]"), ("classes=999", "classes", "0..79"),
    ("classes=1,-2", "classes", ">= 0"), ("agnostic=maybe", "agnostic", "true")])
def test_query_values_are_checked_with_the_infer_flags_ranges(server, query, field, allowed):
    status, headers, answer = predict(server.url, (IMAGES / "tiny.jpg").read_bytes(), "?" + query)
    value = query.split("=", 1)[1].split(",")[-1]
    assert status == 400, answer
    error = answer["error"]
    assert error.startswith(f"query parameter {field}: ") and value in error and allowed in error, error
    assert "\n" not in error and headers["X-Content-Type-Options"] == "nosniff"


def _png_of_zeros(width: int, height: int) -> bytes:
    """A valid grey PNG (every row filter 0, every pixel 0): a few KB for millions of pixels."""
    import zlib
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + \
        struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = zlib.compress(bytes(width + 1) * height, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_from_its_header(server, engine, tmp_path):
    bomb = _png_of_zeros(2500, 2000)  # 5 Mpx (15 MB decoded) in a few KB; the server's limit is 4 Mpx
    assert len(bomb) < 50_000 and cv2.imdecode(np.frombuffer(bomb, np.uint8), cv2.IMREAD_COLOR).shape == (2000, 2500, 3)
    status, headers, answer = predict(server.url, bomb, "?name=bomb.png")
    assert status == 413, answer
    assert answer["error"] == ("bomb.png: image too large: PNG of 2500 x 2000 = 5000000 pixels, over the limit of "
                               "4000000 pixels")
    status, _, answer = predict(server.url, _png_of_zeros(2000, 2000), "?name=fits.png")  # at the limit: decoded
    assert status == 200 and answer["file"] == "fits.png", answer
    # the same limit in infer, with its flag: that image is refused, the others are answered
    source = tmp_path / "images"
    source.mkdir()
    (source / "bomb.png").write_bytes(bomb)
    shutil.copy(IMAGES / "tiny.jpg", source / "tiny.jpg")
    run_cli("yolov5", "infer", "--engine", engine[0], "--source", source, "--out", tmp_path / "out",
            "--no-draw", "--max-pixels", 4_000_000)
    records = {Path(r["file"]).name: r for r in map(json.loads, (tmp_path / "out" / "predictions.jsonl").open())}
    assert records["bomb.png"]["error"].startswith("image too large: PNG of 2500 x 2000") and \
        "detections" in records["tiny.jpg"]


def test_upload_limit_is_in_mib(server):
    """--max-upload-mb 1 is 1 MiB: 1 MiB - 4096 bytes is under it (read, then not an image), 1 MiB + 1 is over."""
    status, _, answer = predict(server.url, b"\xff" * ((1 << 20) - 4096))
    assert status == 400 and "not a decodable image" in answer["error"], answer
    status, headers, answer = predict(server.url, b"\xff" * ((1 << 20) + 1))
    assert status == 413 and "larger than the limit of 1048576 bytes" in answer["error"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_chunked_upload_over_the_limit_gets_413(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        image = (IMAGES / "street.jpg").read_bytes()
        body = (image * ((1 << 20) // len(image) + 2))[:(1 << 20) + 4096]  # a decodable JPEG first, then more
        connection.request("POST", "/v1/predict", body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                           headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 413 and "larger than the limit" in answer["error"], answer
    finally:
        connection.close()
    # under the limit, chunked is read whole and answered
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        data = (IMAGES / "street.jpg").read_bytes()
        connection.request("POST", "/v1/predict?name=chunked.jpg", body=iter([data[:1000], data[1000:]]),
                           headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["file"] == "chunked.jpg"
    finally:
        connection.close()


def test_every_answer_says_nosniff(server):
    for path, data in (("/health", None), ("/metrics", None), ("/", None), ("/nowhere", None),
                       ("/v1/predict", (IMAGES / "tiny.jpg").read_bytes()), ("/v1/predict", b"")):
        status, headers, _ = request(server.url + path, data)
        assert headers.get("X-Content-Type-Options") == "nosniff", (path, status, headers)


def _slow_client(port: int, content_length: int = 100_000) -> socket.socket:
    """A connection that sends its headers and the first bytes of its body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                 f"Content-Length: {content_length}\r\n\r\n".encode() + b"\xff\xd8")
    return sock


def _status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            break
        data += more
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def test_slow_clients_hold_no_thread_and_sigterm_refuses_new_connections(engine, tmp_path):
    """Two request threads, twelve clients trickling their bodies: /health and an upload are still answered;
    the slow ones get 408 at --read-timeout. Then SIGTERM while a request is being received: new connections
    are refused at once, and that request, finished by its client, is answered."""
    server = Server("--engine", engine[0], "--workers", 1, "--threads", 2, "--read-timeout", 6,
                    log=tmp_path / "serve.log")
    slow = []
    try:
        slow = [_slow_client(server.port) for _ in range(12)]
        status, _, body = request(f"{server.url}/health", timeout=30)
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, _, record = predict(server.url, (IMAGES / "tiny.jpg").read_bytes(), "?name=tiny.jpg")
        assert status == 200 and record["file"] == "tiny.jpg"
        assert {_status_of(sock) for sock in slow} == {408}

        data = (IMAGES / "street.jpg").read_bytes()
        in_flight = _slow_client(server.port, len(data))
        assert request(f"{server.url}/health", timeout=30)[0] == 200  # the slow request has been accepted
        server.process.send_signal(signal.SIGTERM)
        refused = False
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
            except ConnectionRefusedError:
                refused = True
                break
            time.sleep(0.05)
        assert refused, "new connections were still accepted after SIGTERM"
        in_flight.sendall(data[2:])
        assert _status_of(in_flight) == 200
        in_flight.close()
        assert server.process.wait(60) == 0
    finally:
        for sock in slow:
            sock.close()
        server.stop()


def test_pipelined_and_kept_alive_requests_are_each_answered(server):
    """Two requests in one write, then a third on the same connection: three answers, in order."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        get = lambda path: f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        sock.sendall(get("/health") + get("/nowhere"))
        reader = sock.makefile("rb")
        statuses = []

        def answer() -> int:
            status = int(reader.readline().split()[1])
            length = 0
            for line in iter(reader.readline, b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            return status

        statuses += [answer(), answer()]
        sock.sendall(get("/health"))
        statuses.append(answer())
    assert statuses == [200, 404, 200]
