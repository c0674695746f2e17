"""B4's ceiling search and the ratio targets of bench/mixed_traffic.py (pure parts), and
its publishers' keep-alive connection (against a real server on port 0).

The search runs against a server whose steps pass exactly below a known
ceiling: within each profile's step budget it must stop with the highest pass
and the lowest failure within 10% of each other, around the ceiling, for
ceilings from ours' today (x0.005 of the issue's rate) to P0's and beyond.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.mixed_traffic import (
    PROFILES,
    CeilingSession,
    HttpConnection,
    Layout,
    ceiling_bracket,
    ceiling_plan,
    make_plan,
    next_multiple,
    ratio_met,
)


def search(ceiling: float, steps: int, precision: float) -> tuple[CeilingSession, bool]:
    """The search against steps that pass up to ``ceiling``; and whether it finished."""
    session = CeilingSession(server="simulated", connections=0)
    multiple: float | None = 1.0
    for _ in range(steps):
        if multiple is None:
            break
        session.multiples.append(multiple)
        session.passed.append(multiple <= ceiling)
        multiple = next_multiple(session.multiples, session.passed, precision)
    return session, multiple is None


@pytest.mark.parametrize(
    ("profile", "ceilings"),
    [
        ("full", (0.003, 0.005, 0.05, 0.3, 0.9, 1.0, 1.5, 2.5, 8.0, 20.0)),
        ("quick", (0.05, 0.3, 1.5, 8.0)),
    ],
)
def test_the_search_finds_the_ceiling_within_10_percent_in_the_step_budget(
    profile: str, ceilings: tuple[float, ...]
) -> None:
    settings = PROFILES[profile]
    for ceiling in ceilings:
        session, finished = search(ceiling, settings.ceiling_steps, settings.ceiling_precision)
        low, high = ceiling_bracket(session)
        assert finished, (ceiling, session.multiples)
        assert low is not None, ceiling
        assert low <= ceiling, ceiling
        assert high is None or high / low < settings.ceiling_precision, (ceiling, low, high)
        assert ceiling / low < settings.ceiling_precision, (ceiling, low)


def test_the_search_stops_at_the_precision_asked_for() -> None:
    coarse, _ = search(0.3, 20, 1.5)
    fine, _ = search(0.3, 20, 1.02)
    assert len(coarse.multiples) < len(fine.multiples)
    low, high = ceiling_bracket(fine)
    assert low is not None
    assert high is not None
    assert high / low < 1.02


def test_a_ratio_target_needs_both_figures() -> None:
    assert ratio_met(30.0, 10.0, 3.0)
    assert not ratio_met(30.1, 10.0, 3.0)
    assert not ratio_met(None, 10.0, 3.0)
    assert not ratio_met(1.0, None, 3.0)


async def _count_connections(close: bool, requests: int) -> tuple[int, list[int]]:
    """``requests`` publishes through one ``HttpConnection`` to a real HTTP server on
    port 0 (asyncio streams) that answers 201, with ``Connection: close`` or without;
    how many TCP connections it accepted, and the statuses read."""
    accepted = 0
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                body = b'{"id":1}'
                extra = b"connection: close\r\n" if close else b""
                writer.write(
                    b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
                    + extra
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its end
        finally:
            writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.ensure_future(serve(reader, writer)))
        await handlers[-1]

    closing: list[asyncio.StreamWriter] = []

    class Tracked(HttpConnection):
        def close(self) -> None:
            if self.writer is not None:
                closing.append(self.writer)
            super().close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = Tracked("127.0.0.1", port)
    request = (
        f"POST /api/notifications/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    statuses = [(await connection.request(request))[0] for _ in range(requests)]
    connection.close()
    for writer in closing:
        await writer.wait_closed()
    await asyncio.gather(*handlers)
    server.close()
    await server.wait_closed()
    return accepted, statuses


@pytest.mark.parametrize(("close", "connections"), [(False, 1), (True, 5)])
def test_a_publisher_keeps_its_connection_unless_the_server_closes_it(
    close: bool, connections: int
) -> None:
    """The load generator's publishers reuse one keep-alive connection (the server's
    CPU per publish must not include a TCP connection of its own), and open a new one
    only after an answer that closed it."""
    accepted, statuses = asyncio.run(_count_connections(close, 5))
    assert statuses == [201] * 5
    assert accepted == connections


def test_every_ceiling_step_carries_the_same_audiences_at_its_own_rate() -> None:
    """A step's deliveries scale with its multiple: the same sequence of audiences at
    every multiple (a plan drawn per step gave x1 a third more deliveries than x0.917)."""
    layout = Layout(200)
    base = make_plan(layout, 100, 7)
    assert ceiling_plan(base, 100) == base
    assert ceiling_plan(base, 250) == base + base + base[:50]
    assert ceiling_plan(base, 40) == base[:40]

    members = layout.members()

    def recipients(plan: list[str]) -> int:
        return sum(len(members[group]) for group in plan)

    assert recipients(ceiling_plan(base, 300)) == 3 * recipients(base)
