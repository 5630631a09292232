"""The built-in service under the real gunicorn on loopback: answers equal to `infer`'s, limits, metrics, SIGTERM,
and the upload page in a real headless Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import pytest

from _serving import IMAGES, ROOT, assert_same_record, free_port, infer_records, run_cli

pytest.importorskip("flask", reason="flask is not installed")
pytest.importorskip("gunicorn", reason="gunicorn is not installed")


class Server:
    """`python -m zoo.yolov5 serve ...` in its own process group, stopped by the test."""

    def __init__(self, *flags, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-m", "zoo.yolov5", "serve", "--port", str(self.port),
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
    return tmp / "y5n.engine", infer_records("yolov5", tmp / "y5n.engine", tmp / "infer", "reference")


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    server = Server("--engine", engine[0], "--workers", 2, "--max-batch", 8, "--max-delay-ms", 20,
                    "--max-upload-mb", 1, log=tmp_path_factory.mktemp("serve-log") / "serve.log")
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
            "--iou", 0.3, "--no-draw", "--backend", "reference")  # serve runs the reference backend on a CPU
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
    status, _, answer = predict(server.url, b"GIF89a but not an image", "?name=bad.gif")
    assert status == 400 and answer["error"].startswith("bad.gif: not a decodable image")
    status, _, answer = predict(server.url, (IMAGES / "tiny.jpg").read_bytes(), "?conf=high")
    assert status == 400 and "conf='high'" in answer["error"]
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


@pytest.mark.skipif(_chromium() is None, reason="needs Chromium and chromedriver (apt-get install chromium "
                                                "chromium-driver; .ci/run installs them)")
def test_upload_page_in_headless_chromium(server, engine, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
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
