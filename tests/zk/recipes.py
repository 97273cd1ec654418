#!/usr/bin/env python3
"""kazoo's recipes that users rely on, against the server at HOST:PORT[,HOST:PORT...]:
ensure_path, a lock, a counter, a party, an election, a transaction, ephemerals across a
session's close, and server_version (the envi four-letter word). Prints one line per
check; exits non-zero on the first surprise. Contacts nothing but the hosts given.

Usage: recipes.py HOSTS
"""

import sys

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoNodeError


def main():
    hosts = sys.argv[1]
    zk = KazooClient(hosts=hosts, timeout=15)
    zk.start(timeout=15)
    print("version", ".".join(str(x) for x in zk.server_version()))

    zk.ensure_path("/r/deep/path/here")
    print("ensure_path", zk.exists("/r/deep/path/here") is not None)

    lock = zk.Lock("/r/lock", "me")
    assert lock.acquire(timeout=10), "lock not acquired"
    print("lock held", lock.is_acquired, len(lock.contenders()))
    lock.release()
    print("lock released", not lock.is_acquired, len(zk.get_children("/r/lock")))

    counter = zk.Counter("/r/counter")
    counter += 5
    counter += 2
    counter -= 1
    print("counter", counter.value)

    party = zk.Party("/r/party", "member-1")
    party.join()
    other = KazooClient(hosts=hosts, timeout=15)
    other.start(timeout=15)
    p2 = other.Party("/r/party", "member-2")
    p2.join()
    print("party", sorted(party))
    # A session's close takes its ephemerals: the second member leaves with it.
    other.stop()
    other.close()
    print("party after close", sorted(party))

    ran = []
    zk.Election("/r/election", "leader-1").run(lambda: ran.append(True))
    print("election ran", ran == [True])

    zk.create("/r/tx", b"0")
    t = zk.transaction()
    t.check("/r/tx", 0)
    t.set_data("/r/tx", b"1")
    t.create("/r/tx-child", b"c")
    print("transaction", [type(r).__name__ for r in t.commit()])
    t = zk.transaction()
    t.check("/r/tx", 0)
    t.create("/r/tx-never", b"n")
    res = t.commit()
    assert isinstance(res[0], BadVersionError), res
    print("failed transaction", [type(r).__name__ for r in res], zk.exists("/r/tx-never") is None)

    seq = [zk.create("/r/queue/item-", b"x", sequence=True, makepath=True) for _ in range(3)]
    print("sequential", [s.rsplit("-", 1)[1] for s in seq])

    try:
        zk.delete("/r/missing")
    except NoNodeError:
        print("NoNode for a missing node")
    zk.stop()
    zk.close()


if __name__ == "__main__":
    main()
