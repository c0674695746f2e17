"""The multi-process load generator's readers (bench/load_generator.py) against real P0.

P0 (``bench/peers/p0_websockets.py``) runs as a subprocess on a free port; the
readers are the real ``python -m bench.load_generator`` processes with real
sockets. What B3, B4 and B6 rely on is asserted: every frame reported once,
with its client, its notification number and a receive time on this
process's clock; a stopped client reads nothing more until it reads again;
close codes for every client.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from array import array
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.common import ServerProcess, bench_env, free_port, start_server, stop_server
from bench.load_generator import ReaderPool, decode_frames, encode_frames, title_index

pytestmark = [pytest.mark.timeout(120)]
CLIENTS = 6
SLOW = 5


@pytest.fixture
def p0(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    server = start_server(
        "P0",
        [sys.executable, "-m", "bench.peers.p0_websockets", "--port", str(port)],
        bench_env(tmp_path),
        tmp_path / "p0.log",
        port=port,
        ws_path="/ws/",
    )
    yield server
    stop_server(server)


def test_frames_survive_the_pipe_format() -> None:
    clients, indexes, times = array("i", [3, 1]), array("i", [7, 8]), array("d", [1.5, 2.25])
    payload = encode_frames(clients, indexes, times)[5:]
    assert decode_frames(payload) == (clients, indexes, times)


def test_title_index_reads_the_notification_number_of_both_spellings() -> None:
    assert title_index(b'{"type":"notification_created","payload":{"title":"n42"}}') == 42
    assert title_index(b'{"type": "notification_created", "payload": {"title": "n7"}}') == 7
    assert title_index(b'{"type":"hello"}') is None
    assert title_index(b'{"type":"notification_created","payload":{"title":"x1"}}') is None


@pytest.mark.asyncio
async def test_readers_report_every_frame_stop_the_slow_client_and_close(
    p0: ServerProcess, tmp_path: Path
) -> None:
    seen: list[tuple[int, int, float]] = []
    arrived = asyncio.Event()
    wanted: set[tuple[int, int]] = set()

    def on_frames(clients: array[int], indexes: array[int], times: array[float]) -> None:
        seen.extend(zip(clients, indexes, times, strict=True))
        if wanted <= {(c, i) for c, i, _ in seen}:
            arrived.set()

    def expect(pairs: set[tuple[int, int]]) -> None:
        wanted.clear()
        wanted.update(pairs)
        arrived.clear()
        if wanted <= {(c, i) for c, i, _ in seen}:
            arrived.set()

    pool = ReaderPool(2, os.sched_getaffinity(0), on_frames, lambda c, code: None, tmp_path)
    await pool.start()
    try:
        await pool.open(
            p0.ws_url,
            [(c, None, f"?user=u{c}", c == SLOW) for c in range(CLIENTS)],
            connectors=4,
        )
        async with httpx.AsyncClient(base_url=p0.base_url) as http:

            async def publish(number: int) -> float:
                sent = time.perf_counter()
                response = await http.get("/publish", params={"title": f"n{number}"})
                assert response.text.strip() == str(CLIENTS)
                return sent

            expect({(c, 0) for c in range(CLIENTS)})
            sent = await publish(0)
            await asyncio.wait_for(arrived.wait(), 30)
            assert sorted((c, i) for c, i, _ in seen) == [(c, 0) for c in range(CLIENTS)]
            # Receive times are on this process's clock (CLOCK_MONOTONIC).
            assert all(sent <= t <= time.perf_counter() for _, _, t in seen)

            # Stopped: the slow client may still take the frame its pending recv
            # was waiting for (n1), never a later one (n2) while the others get it.
            await pool.set_gate(False)
            others = {c for c in range(CLIENTS) if c != SLOW}
            expect({(c, 2) for c in others})
            await publish(1)
            await publish(2)
            await asyncio.wait_for(arrived.wait(), 30)
            await pool.flush()
            assert (SLOW, 2) not in {(c, i) for c, i, _ in seen}
            assert len(await pool.slow_ports()) == 1

            # Reading again, it gets what it missed.
            expect({(SLOW, 2)})
            await pool.set_gate(True)
            await asyncio.wait_for(arrived.wait(), 30)
        pairs = [(c, i) for c, i, _ in seen]
        assert len(pairs) == len(set(pairs)) == 3 * CLIENTS
        codes = await pool.close()
    finally:
        await pool.stop()
    assert sorted(codes) == list(range(CLIENTS))
    assert set(codes.values()) == {1000}
