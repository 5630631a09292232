"""`serve`: the built-in HTTP service (upload page, POST /v1/predict, /health, /metrics) under gunicorn."""
from __future__ import annotations

from pathlib import Path

from zoo.vision.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP

from ..engine_file import EngineFileError, read_header
from ..errors import UserError, say
from ..flags import add_common_flags, bounded, positive_int

HELP = "serve the model over HTTP: upload page, /v1/predict, /health, /metrics (Flask + gunicorn)"


def add_arguments(parser, model) -> None:
    add_common_flags(parser, model)
    parser.add_argument("--engine", "-e", type=Path, help="engine built by `build` (otherwise built in memory)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; other hosts need an "
                             "explicit address such as 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes, one engine each (default 1)")
    parser.add_argument("--threads", type=int, default=16, help="request threads per worker (default 16)")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="dynamic batching: most images per engine call, at most the engine's max batch "
                             "(default 8; 1 turns batching off)")
    parser.add_argument("--max-delay-ms", type=bounded(float, 0, 60_000), default=5.0,
                        help="dynamic batching: longest wait for more requests after the first (default 5)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests waiting per worker before answering 503 with Retry-After (default 64)")
    parser.add_argument("--max-upload-mb", type=bounded(float, 0, 4096, lo_open=True), default=16.0,
                        help="largest upload accepted, in MiB; larger gets 413 (default 16)")
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        help=MAX_PIXELS_HELP + "; larger gets 413")
    parser.add_argument("--read-timeout", type=bounded(float, 0, 3600, lo_open=True), default=60.0,
                        help="seconds a client has to send a whole request, headers and body; slower gets 408 "
                             "(default 60). Requests are read by the worker's event loop, so slow clients hold "
                             "no request thread")
    parser.add_argument("--graceful-timeout", type=int, default=30,
                        help="on SIGTERM, seconds given to requests in flight before workers stop (default 30)")


def run(model, args) -> int:
    from zoo.serve.server import ServeSettings, ZooServer, engine_predictor
    for flag in ("port", "workers", "threads", "max_batch", "max_queue"):
        if getattr(args, flag) < (0 if flag == "port" else 1):
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be at least 1")
    if args.engine:
        try:
            engine_batch = read_header(args.engine)[0].batch[2]
        except EngineFileError as e:
            raise UserError(str(e)) from None
    else:
        args.batch = (1, 1, args.max_batch)  # weights are built in each worker, for the batch served
        engine_batch = args.max_batch
    if args.max_batch > engine_batch:
        say(f"--max-batch {args.max_batch} is above the engine's max batch {engine_batch}: using {engine_batch}")
    settings = ServeSettings(host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                             max_batch=min(args.max_batch, engine_batch), max_delay_ms=args.max_delay_ms,
                             max_queue=args.max_queue, max_upload_mb=args.max_upload_mb,
                             max_pixels=args.max_pixels, read_timeout_s=args.read_timeout,
                             graceful_timeout_s=args.graceful_timeout)
    say(f"serving {model.name} on http://{args.host}:{args.port}/ ({args.workers} workers, batch up to "
        f"{settings.max_batch}, {args.max_delay_ms:g} ms delay)")
    ZooServer(engine_predictor(model, args), settings, engine_batch).run()
    return 0
