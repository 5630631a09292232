"""The built-in HTTP service: `python -m zoo.<model> serve --engine ...` (a Flask app served by gunicorn).

- `predictor.py`: an engine opened once per worker; uploads through the model's own `load_images` and `records`,
  so every answer is the record `infer` writes for the same image.
- `batching.py`: concurrent requests gathered into one engine call (up to --max-batch or --max-delay-ms).
- `metrics.py`: Prometheus text over counters shared by all workers.
- `app.py`: the Flask routes (/, /v1/predict, /health, /metrics) and their error answers.
- `server.py`: the gunicorn application that `serve` starts.
"""
