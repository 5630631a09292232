"""The Flask app: an upload page, POST /v1/predict, /health and /metrics. Errors are JSON with one-line reasons."""
from __future__ import annotations

import time
from importlib import resources

from flask import Flask, Response, jsonify, request
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from zoo.vision.images import DEFAULT_MAX_PIXELS, decode_image, image_size, over_pixel_limit

from .batching import Batcher, QueueFull
from .metrics import Metrics
from .predictor import Predictor, annotated_jpeg
from .reader import SECURITY_HEADERS, too_large_message

RETRY_AFTER_S = 1


def create_app(predictor: Predictor, metrics: Metrics, max_upload_bytes: int, max_batch: int,
               max_delay_ms: float, max_queue: int, request_timeout_s: float = 60.0,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes  # werkzeug answers 413 past it, before reading it all
    batcher = Batcher(predictor.run_batch, min(max_batch, predictor.max_batch), max_delay_ms / 1000, max_queue,
                      on_batch=metrics.observe_batch)
    page = resources.files(__package__).joinpath("upload.html").read_text()
    title = f"{predictor.model.name} {predictor.header.variant}"

    @app.before_request
    def start_clock():
        request.environ["zoo.started"] = time.perf_counter()

    @app.after_request
    def count(response):
        response.headers.update(SECURITY_HEADERS)
        if request.path == "/v1/predict":
            metrics.observe_request(response.status_code,
                                    time.perf_counter() - request.environ.get("zoo.started", time.perf_counter()))
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        reason = {413: too_large_message(max_upload_bytes)}.get(error.code, error.description)
        return jsonify(error=reason), error.code

    @app.errorhandler(Exception)
    def server_error(error: Exception):  # one line for the client; the traceback goes to gunicorn's log
        app.logger.exception("request failed")
        return jsonify(error=f"internal error: {type(error).__name__}: {error}"), 500

    controls = "".join(  # the thresholds the model has, at the service's defaults, set by the user before a run
        f'<label>{name} <input type="number" class="threshold" id="{name}" min="0" max="1" step="0.01" '
        f'value="{getattr(predictor.defaults, name)}"></label>' for name in ("conf", "iou") if name in predictor.flags)

    @app.get("/")
    def upload_page():
        return Response(page.replace("{{title}}", escape(title)).replace("{{controls}}", controls),
                        mimetype="text/html")

    @app.get("/health")
    def health():
        return jsonify(status="ok", model=predictor.model.name, variant=predictor.header.variant,
                       backend=predictor.header.backend, max_batch=batcher.max_batch)

    @app.get("/metrics")
    def prometheus():
        return Response(metrics.text(), mimetype="text/plain; version=0.0.4")

    @app.post("/v1/predict")
    def predict():
        # a multipart upload (the page, curl -F) or the image as the body (curl --data-binary, any content type)
        multipart = request.mimetype == "multipart/form-data"
        upload = next(iter(request.files.values()), None) if multipart else None
        name = (upload.filename if upload else None) or request.args.get("name", "upload")
        data = upload.read() if upload else b"" if multipart else request.get_data(parse_form_data=False)
        if not data:
            return jsonify(error="no image: send it as a multipart file or as the request body"), 400
        try:  # the query first: a bad value costs no decoding
            options = predictor.options({k: v for k, v in request.args.items() if k not in ("annotate", "name")})
        except ValueError as e:
            return jsonify(error=str(e)), 400
        received = time.perf_counter()
        too_many_pixels = over_pixel_limit(image_size(data), max_pixels)  # from the header, before decoding
        if too_many_pixels:
            return jsonify(error=f"{name}: {too_many_pixels}"), 413
        image, reason = decode_image(data, max_pixels)
        if image is None:
            return jsonify(error=f"{name}: {reason}"), 400
        decoded = time.perf_counter()
        try:
            future = batcher.submit((name, image, options))
        except QueueFull as e:
            response = jsonify(error=f"server busy: {e}; retry later")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response, 503
        answer = predictor.finish(future.result(timeout=request_timeout_s))
        if request.args.get("annotate", "").lower() not in ("1", "true", "yes"):
            return jsonify(answer.record)
        # the page's request: the annotated image and the time of each stage, in milliseconds
        drawn = time.perf_counter()
        annotated = annotated_jpeg(image, answer.record)
        t = answer.timings
        stages = {"decode": decoded - received, "queue": t["started"] - decoded, "preprocess": t["preprocess"],
                  "network": t["network"], "postprocess": t["postprocess"], "draw": time.perf_counter() - drawn}
        timings = {k: round(1000 * v, 2) for k, v in stages.items()}
        return jsonify({**answer.record, "annotated": annotated, "timings_ms": timings,
                        "batch_size": t["batch_size"]})

    return app
