"""Start NVIDIA's `tritonserver` (from the `nvidia-pytriton` wheel) on a model repository, and stop it cleanly.

    python -m zoo.triton serve model_repository/ --http-port 8000

The wheel pins numpy<2, so it lives in an environment of its own (`.venv-triton`, made by `make setup`), used only
to run the server. What it takes to run its binary with a plain repository:
- its bundled libraries (`nvidia_pytriton.libs`) on LD_LIBRARY_PATH;
- a backend folder whose `python/` holds the python backend and the stub built for the running Python;
- the python stub ignores PYTHONPATH, so the models' `model.py` read the import paths from ZOO_TRITON_PATH: the
  server environment's site-packages first (its numpy 1.x is the one the stub's tensors work with), then the zoo
  checkout and the zoo environment's site-packages (torch, OpenCV).
Its NVML/DCGM warnings on a machine without a GPU are harmless.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_ENV = "ZOO_TRITON_ENV"     # a virtualenv holding nvidia-pytriton (default: .venv-triton in the checkout)


class TritonNotFound(RuntimeError):
    pass


def find_server_site(env: str | Path | None = None) -> Path:
    """The site-packages folder holding `pytriton/tritonserver/bin/tritonserver`."""
    candidates = [Path(env)] if env else []
    candidates += [Path(os.environ[SERVER_ENV])] if os.environ.get(SERVER_ENV) else []
    candidates += [ROOT / ".venv-triton", Path(sys.prefix)]
    for candidate in candidates:
        for site in sorted(candidate.glob("lib/python3*/site-packages")):
            if (site / "pytriton" / "tritonserver" / "bin" / "tritonserver").is_file():
                return site
    raise TritonNotFound("no tritonserver found: run `make setup` (it makes .venv-triton with nvidia-pytriton) or "
                         f"set {SERVER_ENV} to a virtualenv with nvidia-pytriton installed; looked in "
                         + ", ".join(str(c) for c in candidates))


def backend_folder(site: Path, into: Path) -> Path:
    """A backend folder for the running Python: the wheel's python backend plus the matching stub."""
    tritonserver = site / "pytriton" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = tritonserver / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonNotFound(f"{stub}: the wheel has no python backend stub for Python {version}")
    python = into / "python"
    python.mkdir(parents=True, exist_ok=True)
    for item in (tritonserver / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy2(item, python / item.name)
    shutil.copy2(stub, python / stub.name)
    return into


def server_environment(site: Path) -> dict:
    env = dict(os.environ)
    libs = [str(site / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or ""]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")]).strip(
        os.pathsep)
    zoo_sites = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    paths = [str(site), str(ROOT)] + [p for p in dict.fromkeys(zoo_sites) if p != str(site)]
    env["ZOO_TRITON_PATH"] = os.pathsep.join(paths)
    env.pop("TRITON_INTERPRET", None)  # the zoo's Triton kernels are not run in the server
    return env


def check_backends(repository: Path) -> None:
    """The bundled server has the python backend only: refuse a repository with a TensorRT plan (what `export
    triton --network plan` writes for NVIDIA's Triton images) in one line, before starting it."""
    for config in sorted(repository.glob("*/config.pbtxt")):
        text = config.read_text(errors="replace")
        if re.search(r'platform:\s*"tensorrt_plan"|backend:\s*"tensorrt"', text):
            raise TritonNotFound(f"{config.parent}: a TensorRT plan model, and the bundled tritonserver has the "
                                 "python backend only; export with --network python, or serve it with NVIDIA's "
                                 "Triton image")


class TritonServer:
    """A running tritonserver: `with TritonServer(repo, http_port=...) as server: server.url ...`."""

    def __init__(self, repository: Path, host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, env: str | Path | None = None, log: Path | None = None,
                 extra: list[str] | None = None):
        self.repository, self.host = Path(repository), host
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.site = find_server_site(env)
        self.log_path, self.extra = log, extra or []
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self, backends: Path) -> list[str]:
        binary = self.site / "pytriton" / "tritonserver" / "bin" / "tritonserver"
        command = [str(binary), "--model-repository", str(self.repository.resolve()),
                   "--backend-directory", str(backends), "--http-address", self.host,
                   "--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port),
                   "--exit-timeout-secs", "30"]
        if self.grpc_port:
            command += ["--grpc-address", self.host, "--grpc-port", str(self.grpc_port)]
        else:
            command += ["--allow-grpc", "false"]
        if not self.metrics_port:
            command[command.index("--metrics-port"):command.index("--metrics-port") + 2] = ["--allow-metrics",
                                                                                             "false"]
        return command + self.extra

    def start(self, timeout: float = 120.0) -> "TritonServer":
        if not self.repository.is_dir():
            raise FileNotFoundError(f"{self.repository}: no such model repository folder")
        check_backends(self.repository)
        self._tmp = tempfile.TemporaryDirectory(prefix="zoo-triton-")
        backends = backend_folder(self.site, Path(self._tmp.name) / "backends")
        log_path = self.log_path or Path(self._tmp.name) / "tritonserver.log"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(self.command(backends), env=server_environment(self.site),
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, without the NVML/DCGM warnings of a machine without a GPU."""
        try:
            text = Path(self.log_path).read_text(errors="replace").splitlines()
        except (OSError, TypeError):
            return ""
        return "\n".join([line for line in text if "NVML" not in line and "DCGM" not in line][-lines:])

    def stop(self, timeout: float = 45.0) -> int | None:
        """SIGTERM (Triton finishes requests in flight and unloads its models), SIGKILL after `timeout`."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the server and its python stubs
                self.process.wait()
        code = self.process.returncode if self.process else None
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.triton", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run tritonserver on a model repository until interrupted")
    serve.add_argument("repository", type=Path, help="model repository (written by `export triton`)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; other hosts need an explicit address)")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    serve.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 turns gRPC off)")
    serve.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    serve.add_argument("--server-env", type=Path, help=f"virtualenv with nvidia-pytriton (default ${SERVER_ENV} "
                                                        "or .venv-triton)")
    serve.add_argument("--log", type=Path, help="write tritonserver's log here (default: shown on failure only)")
    serve.add_argument("--timeout", type=float, default=120, help="seconds to wait for readiness (default 120)")
    args = parser.parse_args(argv)
    try:
        server = TritonServer(args.repository, args.host, args.http_port, args.grpc_port, args.metrics_port,
                              args.server_env, args.log)
        server.start(args.timeout)
    except (TritonNotFound, FileNotFoundError, RuntimeError, TimeoutError) as e:
        print(f"zoo.triton serve: error: {e}", file=sys.stderr)
        return 2
    print(f"tritonserver ready at {server.url} (metrics {server.metrics_url}); Ctrl-C or SIGTERM stops it",
          file=sys.stderr, flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    code = server.process.poll()
    server.stop()
    if code is not None:
        print(f"zoo.triton serve: tritonserver exited with code {code}:\n{server.log_tail()}", file=sys.stderr)
        return 1
    return 0
