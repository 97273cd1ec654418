#!/usr/bin/env python3
"""The differential test's client: the same seeded random ZooKeeper operations, through
kazoo (an unmodified ZooKeeper client), against one server; prints one normalized line
per operation, so that two servers' outputs can be compared line by line.

Usage: differential.py HOST:PORT SEED [SEED...]

Each seed works under its own root, /d<seed>, with two sessions (S1, S2). Operations:
creates in every mode (persistent, ephemeral, sequential, ephemeral-sequential; under
missing parents too), getData, exists, setData and delete with right and wrong versions,
getChildren (with its Stat), multi with and without a failing op, watches set by
getData, exists and getChildren (their events are printed as they come, after a barrier
that ZooKeeper orders behind them: a read of each watched path, then a marker through
kazoo's callback queue), and S2's close (its ephemerals must go, firing S1's watches). Each line holds the error class or the result: paths, data, child
lists, and the Stat fields that do not depend on how a server numbers its transactions
(version, cversion, aversion, dataLength, numChildren, whether ephemeralOwner is S1, S2
or nobody) plus their relations (czxid == mzxid, pzxid >= czxid). zxid values and times
differ between servers by design and are not printed.

Contacts nothing but the HOST:PORT given (loopback in the tests).
"""

import random
import sys
import threading

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.protocol.states import Callback


def stat_line(st, owners):
    if st is None:
        return "none"
    owner = owners.get(st.ephemeralOwner, "?" if st.ephemeralOwner else "-")
    return "v%d cv%d av%d len%d kids%d owner=%s c=m:%s p>=c:%s" % (
        st.version,
        st.cversion,
        st.aversion,
        st.dataLength,
        st.numChildren,
        owner,
        st.czxid == st.mzxid,
        st.pzxid >= st.czxid,
    )


def run(host, seed, out):
    rng = random.Random(seed)
    root = "/d%d" % seed
    s1 = KazooClient(hosts=host, timeout=15)
    s2 = KazooClient(hosts=host, timeout=15)
    s1.start(timeout=15)
    s2.start(timeout=15)
    owners = {s1.client_id[0]: "S1", s2.client_id[0]: "S2"}
    # Watch events, per session, as kazoo delivers them; and the paths watched.
    events = {"S1": [], "S2": []}
    watched = {"S1": set(), "S2": set()}
    sessions = {"S1": s1, "S2": s2}

    def watcher(who, table):
        def on_event(ev):
            events[who].append("%s %s %s" % (table, ev.type, ev.path[len(root):] or "/"))
        return on_event

    callbacks = {
        (who, table): watcher(who, table) for who in ("S1", "S2") for table in ("data", "child")
    }

    def barrier():
        # ZooKeeper sends a watched znode's event before any reply that reflects the
        # change: read each watched path, then wait until kazoo ran every callback queued.
        for who, zk in sessions.items():
            if zk.connected:
                for p in sorted(watched[who]):
                    zk.exists(p)
                done = threading.Event()
                zk.handler.dispatch_callback(Callback("watch", done.set, ()))
                done.wait(15)
            if events[who]:
                # One step's events, sorted: the order of events on different znodes is
                # not compared (on ZK-Mason they come from different shards' feeds).
                out.append("events %s: %s" % (who, sorted(events[who])))
                events[who].clear()

    s1.create(root, b"")
    names = ["a", "b", "c"]
    paths = [root + "/" + n for n in names] + [root + "/a/x", root + "/b/y", root + "/q"]
    made = []

    def do(label, f):
        try:
            r = f()
            out.append("%s => ok %s" % (label, r))
        except KazooException as e:
            out.append("%s => err %s" % (label, type(e).__name__))

    def pick():
        if made and rng.random() < 0.6:
            return rng.choice(made)
        return rng.choice(paths)

    for i in range(60):
        who, zk = rng.choice([("S1", s1), ("S2", s2)])
        op = rng.choice(
            ["create", "create", "get", "exists", "set", "delete", "children", "multi", "watch", "watch"]
        )
        p = pick()
        label = "%d %s %s %s" % (i, who, op, p[len(root):] or "/")
        if op == "create":
            eph = rng.random() < 0.3
            seq = rng.random() < 0.3
            data = bytes(rng.choice([b"", b"v", b"hello"]))
            base = p if not seq else p + "-"

            def create(zk=zk, base=base, data=data, eph=eph, seq=seq):
                path, st = zk.create(base, data, ephemeral=eph, sequence=seq, include_data=True)
                made.append(path)
                return "%s %s" % (path[len(root):], stat_line(st, owners))

            do(label + " eph=%s seq=%s" % (eph, seq), create)
        elif op == "get":
            do(label, lambda zk=zk, p=p: "%r %s" % (zk.get(p)[0], stat_line(zk.get(p)[1], owners)))
        elif op == "exists":
            do(label, lambda zk=zk, p=p: stat_line(zk.exists(p), owners))
        elif op == "watch":
            how = rng.choice(["get", "exists", "children"])
            table = "child" if how == "children" else "data"
            cb = callbacks[(who, table)]

            def watch(zk=zk, p=p, how=how, cb=cb, who=who):
                if how == "get":
                    data, st = zk.get(p, watch=cb)
                    r = "%r %s" % (data, stat_line(st, owners))
                elif how == "exists":
                    r = stat_line(zk.exists(p, watch=cb), owners)
                else:
                    r = str(sorted(zk.get_children(p, watch=cb)))
                watched[who].add(p)
                return r

            do(label + " by " + how, watch)
        elif op == "set":
            v = rng.choice([-1, 0, 1, 2])
            do(label + " v=%d" % v, lambda zk=zk, p=p, v=v: stat_line(zk.set(p, b"s%d" % i, version=v), owners))
        elif op == "delete":
            v = rng.choice([-1, 0, 1])

            def delete(zk=zk, p=p, v=v):
                zk.delete(p, version=v)
                if p in made:
                    made.remove(p)
                return ""

            do(label + " v=%d" % v, delete)
        elif op == "children":

            def children(zk=zk, p=p):
                kids, st = zk.get_children(p, include_data=True)
                return "%s %s" % (sorted(kids), stat_line(st, owners))

            do(label, children)
        else:
            q = pick()
            t = zk.transaction()
            t.create(p + "-m%d" % i, b"m")
            if rng.random() < 0.5:
                t.check(q, rng.choice([0, 5]))
            t.set_data(q, b"t", version=-1)

            def one(r):
                if isinstance(r, Exception):
                    return type(r).__name__
                if isinstance(r, str):
                    return r[len(root):]
                if isinstance(r, bool):
                    return str(r)
                return stat_line(r, owners)

            def commit(t=t):
                return [one(r) for r in t.commit()]

            do(label + " check/set %s" % q[len(root):], commit)
        barrier()
    # S2 goes: its ephemerals go with it (and fire S1's watches on them).
    s2.stop()
    s2.close()
    watched["S2"].clear()
    barrier()
    kids, st = s1.get_children(root, include_data=True)
    out.append("after close: %s %s" % (sorted(kids), stat_line(st, owners)))
    for p in sorted(set(made)):
        out.append("after close %s: %s" % (p[len(root):], stat_line(s1.exists(p), owners)))
    s1.stop()
    s1.close()


def main():
    host = sys.argv[1]
    for seed in sys.argv[2:]:
        out = []
        run(host, int(seed), out)
        for line in out:
            print("seed %s: %s" % (seed, line))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
