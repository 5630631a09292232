"""Triton Inference Server: the model repository the zoo exports, the steps it runs, and the server launcher.

- `repository.py`: writes an ensemble per model (encoded image bytes in, detections or classes out) of three steps:
  pre-processing and post-processing (python backend, the zoo's own functions) and the network (a raw TensorRT plan,
  or with `--network python` the zoo runtime in the python backend). `python -m zoo.<model> export triton` calls it.
- `steps.py`: the python-backend models of those steps.
- `server.py`: finds the `tritonserver` binary of the `nvidia-pytriton` wheel, starts it on a repository, waits for
  readiness and stops it cleanly: `python -m zoo.triton serve model_repository/`.
- `client.py`: `infer --triton URL` sends images to a running server.

This package is a tool, not a model family: it has a `__main__` but no `FAMILY` (see zoo.registry).
"""
TOOL = "Triton Inference Server launcher: python -m zoo.triton serve REPOSITORY"
