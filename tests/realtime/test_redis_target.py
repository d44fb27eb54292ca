"""REDIS_URL as Realtime reads it: one primary, or the primary Sentinels name."""

from __future__ import annotations

import pytest

from realtime.cluster.redis.connect import RedisTarget


def test_a_plain_url_is_handed_to_redis_py() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380", "unix:///run/redis.sock"):
        target = RedisTarget.parse(url)
        assert target.url == url and not target.sentinel


def test_a_sentinel_url_names_its_sentinels_service_db_and_the_primarys_credentials() -> None:
    target = RedisTarget.parse("redis+sentinel://user:p%40ss@10.0.0.1:26379,[::1]:26380/mymaster/2")
    assert target.sentinel
    assert target.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 2, "user", "p@ss")
    plain = RedisTarget.parse("redis+sentinel://s1:26379/mymaster")
    assert (plain.db, plain.username, plain.password) == (0, None, None)


def test_a_cluster_url_names_its_startup_nodes() -> None:
    target = RedisTarget.parse("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001")
    assert target.cluster == (("10.0.0.1", 7000), ("10.0.0.2", 7001)) and target.password == "pw"
    assert not RedisTarget.parse("redis://h:1").cluster


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:1", "must start with"),
        ("redis+sentinel://s1/mymaster", "not host:port"),
        ("redis+cluster://c1:7000/0", "no path"),
        ("redis+sentinel://s1:26379", "/service_name"),
        ("redis+sentinel://s1:26379/mymaster/x", "/service_name"),
    ],
)
def test_a_bad_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisTarget.parse(url)
