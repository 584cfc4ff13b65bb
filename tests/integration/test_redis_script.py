"""The limiter's Lua script, sent and read on a connection each thread keeps."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from guard.redis_script import DirectScript

pytestmark = pytest.mark.redis

COUNT = b"return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=0.2)
    yield client
    client.close()


def counter(client: redis.Redis) -> Callable[[list[str], list[int]], Any]:
    """The COUNT script, each call sent and its reply read at once."""
    script = DirectScript(client, COUNT)
    return lambda keys, args: script.send(keys, args)()


def connections(admin: redis.Redis) -> int:
    return len(admin.client_list(_type="normal"))


def test_calls_reuse_one_connection_per_thread(client: redis.Redis, redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    count = counter(client)
    assert count(["hits"], [1]) == 1  # and the script is loaded, on a pooled connection
    before = connections(admin)
    assert [count(["hits"], [1]) for _ in range(4)] == [2, 3, 4, 5]
    assert connections(admin) == before
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(count(["hits"], [1])))
    worker.start()
    worker.join()
    assert answers == [6] and connections(admin) <= before + 1


def test_a_flushed_script_is_loaded_again(client: redis.Redis) -> None:
    count = counter(client)
    assert count(["hits"], [1]) == 1
    client.script_flush()
    assert count(["hits"], [1]) == 2


def test_a_connection_the_server_closed_is_replaced_at_once(client: redis.Redis) -> None:
    count = counter(client)
    assert count(["hits"], [1]) == 1
    client.client_kill_filter(_type="normal", skipme=False)
    assert count(["hits"], [1]) == 2


def test_after_a_timeout_no_late_reply_is_taken_for_a_later_answer(
    client: redis.Redis, redis_url: str
) -> None:
    count = counter(client)
    assert count(["hits"], [1]) == 1
    admin = redis.Redis.from_url(redis_url)
    admin.client_pause(500)
    with pytest.raises(redis.TimeoutError):
        count(["hits"], [10])
    time.sleep(0.5)
    # Whether or not the timed-out call ran once Redis woke, its reply (11) is never
    # read as this call's answer.
    assert count(["hits"], [100]) in (101, 111)


def test_a_forked_child_opens_its_own_connection(client: redis.Redis) -> None:
    count = counter(client)
    assert count(["hits"], [1]) == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, whatever happens
        try:
            os.write(write, str(count(["hits"], [1])).encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"2"
    assert count(["hits"], [1]) == 3  # the parent's connection was left alone


def test_a_call_is_sent_at_once_and_its_reply_read_later(
    client: redis.Redis, redis_url: str
) -> None:
    script = DirectScript(client, COUNT)
    script.send(["hits"], [1])()
    read = script.send(["hits"], [1])
    admin = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 1
    while admin.get("hits") != b"2":  # counted before its reply is read
        assert time.monotonic() < deadline
    assert read() == 2
    assert script.send(["hits"], [1])() == 3
