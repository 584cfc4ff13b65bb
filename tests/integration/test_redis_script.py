"""The limiter's Lua script, run on a connection borrowed from the pool for one call."""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import NoScriptError

from guard._counting.direct_script import DirectScript

pytestmark = pytest.mark.redis

COUNT = b"return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=0.2)
    yield client
    client.close()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    admin = redis.Redis.from_url(redis_url)
    yield admin
    admin.close()


def connections(admin: redis.Redis) -> int:
    """Clients connected to Redis, the admin's own included."""
    return int(admin.info("clients")["connected_clients"])


def test_calls_in_sequence_share_one_connection(client: redis.Redis, admin: redis.Redis) -> None:
    count = DirectScript(client, COUNT)
    assert count.run(["hits"], [1]) == 1  # and the script is loaded, on a pooled connection
    before = connections(admin)
    assert [count.run(["hits"], [1]) for _ in range(4)] == [2, 3, 4, 5]
    assert connections(admin) == before


def test_a_thread_per_call_does_not_leave_a_connection_each(
    client: redis.Redis, admin: redis.Redis
) -> None:
    """What werkzeug's threaded server and gevent do: every request on a new thread."""
    count = DirectScript(client, COUNT)
    count.run(["hits"], [1])
    before = connections(admin)
    answers: list[int] = []
    for _ in range(200):
        worker = threading.Thread(target=lambda: answers.append(count.run(["hits"], [1])))
        worker.start()
        worker.join()
    assert sorted(answers) == list(range(2, 202))
    # This thread keeps its lease; each short-lived thread returned its connection to the
    # pool as it ended, and the next one took it again: one more in all, not 200.
    assert connections(admin) <= before + 1


def test_concurrent_calls_use_at_most_one_connection_each(
    client: redis.Redis, admin: redis.Redis
) -> None:
    count = DirectScript(client, COUNT)
    before = connections(admin)
    start = threading.Barrier(8)

    def calls() -> None:
        start.wait()
        for _ in range(50):
            count.run(["hits"], [1])

    workers = [threading.Thread(target=calls) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert client.get("hits") == b"400"
    assert connections(admin) <= before + 8


def test_a_flushed_script_is_loaded_again(client: redis.Redis) -> None:
    count = DirectScript(client, COUNT)
    assert count.run(["hits"], [1]) == 1
    client.script_flush()
    assert count.run(["hits"], [1]) == 2


def test_a_connection_the_server_closed_is_replaced_at_once(client: redis.Redis) -> None:
    count = DirectScript(client, COUNT)
    assert count.run(["hits"], [1]) == 1
    client.client_kill_filter(_type="normal", skipme=False)
    # The server has closed it; give the reset a moment to reach this host (on a loaded
    # machine the next line could otherwise write before the kernel knows).
    time.sleep(0.05)
    assert count.run(["hits"], [1]) == 2


def test_after_a_timeout_no_late_reply_is_taken_for_a_later_answer(
    client: redis.Redis, admin: redis.Redis
) -> None:
    count = DirectScript(client, COUNT)
    assert count.run(["hits"], [1]) == 1
    admin.client_pause(500)
    with pytest.raises(redis.TimeoutError):
        count.run(["hits"], [10])
    time.sleep(0.5)
    # The timed-out call was sent once, never again; whether Redis ran it once it woke
    # or not, its reply (11) is never read as this call's answer.
    assert count.run(["hits"], [100]) in (101, 111)


def test_a_script_error_leaves_the_next_call_a_clean_connection(client: redis.Redis) -> None:
    failing = DirectScript(client, b"return redis.error_reply('refused')")
    count = DirectScript(client, COUNT)
    with pytest.raises(redis.ResponseError, match="refused"):
        failing.run([], [])
    assert count.run(["hits"], [1]) == 1


def test_a_forked_child_opens_its_own_connection(client: redis.Redis) -> None:
    count = DirectScript(client, COUNT)
    assert count.run(["hits"], [1]) == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, whatever happens
        try:
            os.write(write, str(count.run(["hits"], [1])).encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"2"
    assert count.run(["hits"], [1]) == 3  # the parent's connection was left alone


# The redis-py connection API DirectScript relies on (see guard/_counting/direct_script.py): these
# fail on a redis-py release that changes it, before a request does.


def test_redis_py_pool_api_keeps_the_signatures_relied_on() -> None:
    get_connection = inspect.signature(redis.ConnectionPool.get_connection)
    # Callable with no argument besides self (redis-py 5.2 required a command name).
    assert all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for name, p in get_connection.parameters.items()
        if name != "self"
    ), get_connection
    assert list(inspect.signature(redis.ConnectionPool.release).parameters) == [
        "self",
        "connection",
    ]
    send = inspect.signature(redis.Connection.send_packed_command).parameters
    assert list(send)[:2] == ["self", "command"]
    assert all(p.default is not p.empty for p in list(send.values())[2:])
    read = inspect.signature(redis.Connection.read_response).parameters
    assert all(p.default is not p.empty for name, p in read.items() if name != "self")
    pack = inspect.signature(redis.Connection.pack_command).parameters
    assert [p.kind for p in pack.values()] == [
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    ]


def test_redis_py_pool_api_behaves_as_relied_on(client: redis.Redis) -> None:
    pool = client.connection_pool
    sha = client.script_load(COUNT)
    connection = pool.get_connection()  # no warning: filterwarnings = error
    connection.send_packed_command(connection.pack_command("EVALSHA", sha, 1, "hits", 5))
    assert connection.read_response() == 5
    connection.send_packed_command(connection.pack_command("EVALSHA", "0" * 40, 0))
    with pytest.raises(NoScriptError):
        connection.read_response()
    # A released connection is the next one handed out: the pool reuses, not reopens.
    pool.release(connection)
    assert pool.get_connection() is connection
    # One disconnected before its release is connected again when next handed out, and
    # a reply left unread on it is gone with the old socket.
    connection.send_packed_command(connection.pack_command("INCRBY", "hits", 1))
    connection.disconnect()
    pool.release(connection)
    again = pool.get_connection()
    again.send_packed_command(again.pack_command("GET", "hits"))
    assert again.read_response() in (b"5", b"6")
    pool.release(again)
