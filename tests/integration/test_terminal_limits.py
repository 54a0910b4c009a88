"""Limits the tenant cannot lift: time, rows, bytes, memory of the terminal itself."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.helpers import create_db, signup
from tests.integration.terminal_client import Term, rss_mb, terminal_pid, terminal_process


@pytest.fixture
async def owner(gateway):
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    return user, db


async def test_the_time_cap_holds_whatever_statement_timeout_the_session_set(stack, owner) -> None:
    user, db = owner
    with terminal_process(stack, TERMINAL_STATEMENT_TIMEOUT_SECONDS="1.5") as port:
        async with await Term.open(stack, db["id"], user["access_token"], port=port) as term:
            await term.query("set statement_timeout = 0")
            loop = asyncio.get_running_loop()
            started = loop.time()
            answers = await term.query("select pg_sleep(20)", timeout=15)
            took = loop.time() - started
            assert 1.4 < took < 3.5, took
            assert answers[0]["type"] == "error" and answers[0]["sqlstate"] == "57014"
            assert "1.5 s" in answers[0]["message"]
            # each message gets its own allowance, and the session goes on
            for _ in range(2):
                answers = await term.query("select pg_sleep(1); select 7")
                assert [a["type"] for a in answers] == ["result"] * 2
            answers = await term.query("select pg_sleep(1); select pg_sleep(1)")
            assert answers[-1]["type"] == "error" and answers[-1]["sqlstate"] == "57014"


async def _sample_rss(pid: int, stop: asyncio.Event) -> float:
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.01)
    return peak


async def test_a_huge_result_is_capped_and_memory_does_not_follow_it(stack, owner) -> None:
    user, db = owner
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        pid = await terminal_pid(stack, term.ready["session_id"])
        await term.query("select generate_series(1, 20000), repeat('x', 100)")  # warm up
        baseline = rss_mb(pid)
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(pid, stop))
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await term.query("select generate_series(1, 50000000), repeat('x', 100)")
        took = loop.time() - started
        stop.set()
        peak = await sampler
        (result,) = answers
        assert result["type"] == "result" and result["truncated"] is True
        assert len(result["rows"]) == 10000  # TERMINAL_MAX_ROWS
        assert result["rows"][0] == [1, "x" * 100]
        # the rest was not fetched: the statement was stopped, not read to its end
        assert took < 10, took
        assert peak - baseline < 30, (baseline, peak)
        # the byte cap: 4 MiB of 1 KiB rows is about 4,000 rows
        wide = await term.one("select g, repeat('y', 1024) from generate_series(1, 100000) g")
        assert wide["truncated"] is True and 3000 < len(wide["rows"]) < 4100
        assert (await term.one("select 1 as fine"))["rows"] == [[1]]


async def test_one_huge_value_is_answered_and_its_memory_released(stack, owner) -> None:
    user, db = owner
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        pid = await terminal_pid(stack, term.ready["session_id"])
        await term.query("set application_name = 'mine'")
        baseline = rss_mb(pid)
        messages = await term.query("select repeat('x', 200000000) as big", timeout=120)
        result = next(m for m in messages if m["type"] == "result")
        assert result["truncated"] is True and result["rows"] == []
        assert result["row_count"] == 1
        assert any(m["type"] == "notice" for m in messages)
        await asyncio.sleep(0.5)
        after = rss_mb(pid)
        assert after - baseline < 30, (baseline, after)
        assert (await term.one("select 2 as next"))["rows"] == [[2]]


async def test_an_idle_session_is_closed_and_a_huge_message_refused(stack, owner) -> None:
    from websockets.exceptions import ConnectionClosed

    user, db = owner
    async with await Term.open(stack, db["id"], user["access_token"]) as term:
        await term.ws.send(
            '{"type": "query", "id": 1, "sql": "select 1 -- ' + "x" * 1_100_000 + '"}'
        )
        with pytest.raises(ConnectionClosed) as closed:  # refused: no answer, session over
            await term.answers(1, timeout=10)
        # the server's close frame says why (1009), unless it closed while we were still
        # sending the rest of the message and the frame was lost with the connection
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    with terminal_process(stack, TERMINAL_IDLE_TIMEOUT_SECONDS="1.5") as port:
        async with await Term.open(stack, db["id"], user["access_token"], port=port) as term:
            # a statement running longer than the idle timeout is not idleness
            assert (await term.one("select pg_sleep(2), 1 as busy"))["type"] == "result"
            with pytest.raises(ConnectionClosed) as closed:
                await term.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
