"""The CPU bare uvicorn costs per request on this machine: the floor under a publish.

Run from the repository root::

    .venv/bin/python -m bench.uvicorn_floor [UVICORN OPTIONS, e.g. --proxy-headers]

uvicorn (httptools and uvloop where installed, as the product's server) serves
``app`` below, which reads the body and answers 201 with a publish-sized JSON body,
pinned to the server CPU as ``bench.publish_cpu`` pins the product's server. This
process (the client CPU) sends the same publish bodies over one keep-alive httpx
connection, one at a time, and prints the server's CPU per request (utime+stime,
less its idle CPU) for three rounds of 3,000. docs/performance.md, "Issue 14: a
single publish over HTTP", compares it with the product's fast publish.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.common import (
    REPO_ROOT,
    cpu_seconds,
    free_port,
    pin_to_client_cpu,
    pin_to_server_cpu,
)

BODY = b'{"id":1,"recipients":1,"created":true}'
ROUNDS = 3
REQUESTS = 3000


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Hello world with a body: what any ASGI app answering a publish must do."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def main(argv: Sequence[str] | None = None) -> int:
    import httpx

    options = list(sys.argv[1:] if argv is None else argv)
    pin_to_client_cpu()
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "bench.uvicorn_floor:app"),
            *("--port", str(port), "--log-level", "warning", *options),
        ],
        cwd=REPO_ROOT,
        preexec_fn=pin_to_server_cpu,
    )
    headers = {"Authorization": "Api-Key tnk_" + "x" * 43}

    def body(index: int) -> dict[str, Any]:
        return {"audience": {"users": [3]}, "title": f"cpu {index}", "message": "bench"}

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(100):
                try:
                    client.post("/api/notifications/", json=body(0), headers=headers)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            for index in range(300):
                client.post("/api/notifications/", json=body(index), headers=headers)
            started, started_cpu = time.monotonic(), cpu_seconds(server.pid)
            time.sleep(2)
            idle = (cpu_seconds(server.pid) - started_cpu) / (time.monotonic() - started)
            for _ in range(ROUNDS):
                started, started_cpu = time.monotonic(), cpu_seconds(server.pid)
                for index in range(REQUESTS):
                    client.post("/api/notifications/", json=body(index), headers=headers)
                elapsed = time.monotonic() - started
                spent = cpu_seconds(server.pid) - started_cpu - idle * elapsed
                row = {
                    "options": options,
                    "server_cpu_ms_per_request": round(spent / REQUESTS * 1000, 4),
                    "requests_per_s": round(REQUESTS / elapsed),
                }
                print(json.dumps(row), flush=True)
    finally:
        server.kill()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
