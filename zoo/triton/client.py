"""`infer --triton URL`: images sent to a Triton server running an exported ensemble; its records come back."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .repository import IMAGE, RECORD


def client_for(url: str):
    import tritonclient.http as http
    return http.InferenceServerClient(url.split("://", 1)[-1], connection_timeout=30, network_timeout=300)


def infer_bytes(client, model: str, data: bytes, name: str) -> dict:
    """`infer`'s record for one encoded image; a server-side error becomes {"file", "error"} like infer's."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException
    tensor = http.InferInput(IMAGE, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=object))
    try:
        result = client.infer(model, [tensor], outputs=[http.InferRequestedOutput(RECORD)],
                              parameters={"file": name})
    except InferenceServerException as e:
        return {"file": name, "error": f"{e.message()}, skipped"}
    return json.loads(result.as_numpy(RECORD).reshape(-1)[0])


def infer_files(url: str, model: str, paths: list[Path], concurrency: int = 4) -> list[dict]:
    """Records in the order of `paths`, `concurrency` requests in flight (the server batches them)."""
    client = client_for(url)
    if not client.is_model_ready(model):
        raise ValueError(f"{url}: model {model!r} is not ready on this server (is it the exported ensemble's name?)")

    def one(path: Path) -> dict:
        try:
            data = path.read_bytes()
        except OSError as e:
            return {"file": str(path), "error": f"cannot read: {e.strerror or e}, skipped"}
        return infer_bytes(client_for(url), model, data, str(path))

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        return list(pool.map(one, paths))
