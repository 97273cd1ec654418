#!/usr/bin/env python3
"""kazoo's recipes that users rely on, against the server at HOST:PORT[,HOST:PORT...]:
ensure_path, a lock (and a second contender that gets it when the first lets go: a
watch), a counter, a party, an election, a transaction, DataWatch and ChildrenWatch,
ephemerals across a session's close, and server_version (the envi four-letter word). Prints one line per
check; exits non-zero on the first surprise. Contacts nothing but the hosts given.

Usage: recipes.py HOSTS
"""

import sys
import threading
import time

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
    # A second client waits for the lock; it gets it when the first lets go.
    rival = KazooClient(hosts=hosts, timeout=15)
    rival.start(timeout=15)
    got = threading.Event()

    def contend():
        with rival.Lock("/r/lock", "rival"):
            got.set()

    t = threading.Thread(target=contend)
    t.start()
    time.sleep(0.5)
    print("rival waits", not got.is_set(), len(lock.contenders()))
    lock.release()
    print("rival got it after the release", got.wait(15))
    t.join(15)
    rival.stop()
    rival.close()
    print("lock released", not lock.is_acquired, len(zk.get_children("/r/lock")))

    # DataWatch and ChildrenWatch call back with the state now, then at every change.
    def until(pred, what):
        deadline = time.time() + 15
        while not pred():
            assert time.time() < deadline, "no callback for " + what
            time.sleep(0.01)

    datas = []
    zk.DataWatch("/r/watched", lambda data, stat: datas.append(data and data.decode()))
    until(lambda: len(datas) == 1, "the first DataWatch call")
    for step, change in enumerate(
        [
            lambda: zk.create("/r/watched", b"a"),
            lambda: zk.set("/r/watched", b"b"),
            lambda: zk.delete("/r/watched"),
        ]
    ):
        change()
        until(lambda: len(datas) == step + 2, "DataWatch change %d" % step)
    print("DataWatch", datas)

    kids = []
    zk.ensure_path("/r/kids")
    zk.ChildrenWatch("/r/kids", lambda children: kids.append(sorted(children)))
    until(lambda: len(kids) == 1, "the first ChildrenWatch call")
    for step, name in enumerate(["c1", "c2"]):
        zk.create("/r/kids/" + name, b"")
        until(lambda: len(kids) == step + 2, "ChildrenWatch change %d" % step)
    zk.delete("/r/kids/c1")
    until(lambda: len(kids) == 4, "ChildrenWatch delete")
    print("ChildrenWatch", kids)

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
