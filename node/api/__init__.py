"""The local HTTP API of a serving node (DESIGN §7; docs/API.md); only this package imports
FastAPI, uvicorn and prometheus-client.

- `serving`: the API in `serve`: the listening socket, bound before `--workers` fork, and
  the job that runs uvicorn on each serving process's event loop.
- `app`: the FastAPI application; `routes`: the endpoints under `/v1`, one module a topic.
- `gate`: what every request passes: its bearer token, its body's size, its audit entry
  (written before the answer goes out), its metrics, the last-resort 500.
- `auth`: the roles (analyst, admin); `models`: the request and response bodies.
- `errors`: the one table from the node's errors to HTTP statuses, and the JSON error shape.
- `metrics`, `metrics_dir`: `/metrics` (Prometheus), summed over `--workers` processes.
"""
