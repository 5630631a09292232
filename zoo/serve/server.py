"""gunicorn running the Flask app: each worker opens the engine itself (after the fork), all share the metrics."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from gunicorn.app.base import BaseApplication

from zoo.engine.engines import engine_runner
from zoo.engine.onnx.runner import session_threads, share_cores

from zoo.vision.images import DEFAULT_MAX_PIXELS

from .metrics import Metrics
from .predictor import Predictor
from .reader import BufferedThreadWorker


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 16             # request threads per worker: what one worker's batcher can gather from
    max_batch: int = 8
    max_delay_ms: float = 5.0
    max_queue: int = 64           # requests waiting per worker before 503
    max_upload_mb: float = 16.0   # MiB
    max_pixels: int = DEFAULT_MAX_PIXELS
    read_timeout_s: float = 60.0  # a whole request (headers and body) must arrive within it, else 408
    graceful_timeout_s: int = 30  # SIGTERM: time given to the requests in flight

    @property
    def buffer_budget_mb(self) -> float:
        """Bytes of requests being received that one worker holds at most (past it: 503): room for 8 uploads at
        the limit, at least 64 MiB."""
        return max(64.0, 8 * self.max_upload_mb)


class ZooServer(BaseApplication):
    """`make_predictor()` is called in each worker, so no engine, thread or torch state crosses a fork."""

    def __init__(self, make_predictor, settings: ServeSettings, max_batch_hint: int):
        self.make_predictor, self.settings = make_predictor, settings
        self.metrics = Metrics(min(settings.max_batch, max_batch_hint))  # made before the fork: shared
        super().__init__()

    def load_config(self):
        s = self.settings
        # the front reader (reader.py) reads whole requests before a thread gets them: slow clients hold no thread
        options = {"bind": f"{s.host}:{s.port}", "workers": s.workers, "worker_class": BufferedThreadWorker,
                   "threads": s.threads, "graceful_timeout": s.graceful_timeout_s, "timeout": 120,
                   "preload_app": False, "accesslog": None, "errorlog": "-", "loglevel": "info",
                   "proc_name": "zoo-serve",
                   # no runtime control socket: one path per user, shared by every server started; not needed
                   "control_socket_disable": True}
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app
        s = self.settings
        # each worker gets its share of the cores, for torch and ONNX Runtime alike: threads beyond them only wait
        # on each other
        share_cores(s.workers)
        torch.set_num_threads(session_threads())
        return create_app(self.make_predictor(), self.metrics, int(s.max_upload_mb * (1 << 20)), s.max_batch,
                          s.max_delay_ms, s.max_queue, max_pixels=s.max_pixels)


def engine_predictor(model, args):
    """A factory of Predictors for `serve`: --engine, or the weights of `args` built in memory (in each worker)."""
    def make() -> Predictor:
        header, runner = engine_runner(model, args)
        parser = argparse.ArgumentParser(add_help=False)
        model.add_infer_arguments(parser)
        return Predictor(model, header, runner, parser, args)
    return make
