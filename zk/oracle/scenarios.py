#!/usr/bin/env python3
"""Oracle scenarios for mason-zk: run them against a real Apache ZooKeeper.

Each scenario starts its own fresh standalone ZooKeeper server (a new
dataDir under a temporary folder, listening on 127.0.0.1:22181 only, tickTime
2000), runs a fixed sequence of requests through kazoo's connection (the
requests are built by hand so that kazoo does not normalise paths), and
prints a trace that `zk/src/tests/oracle.rs` replays on the tree and compares
line by line (it embeds zk/oracle/trace.txt).

This script contacts nothing but 127.0.0.1.

Rerun (Debian 12: `apt-get install zookeeper python3-kazoo`; kazoo 2.8 or
later):

    /usr/bin/python3 zk/oracle/scenarios.py > zk/oracle/trace.txt

Options: ZK_CLASSPATH overrides the server classpath (default: the Debian
package's jars under /usr/share/java); ZK_PORT the port (default 22181);
ZK_KEEP=1 keeps each scenario's temporary dataDir and server log. Arguments
name scenarios to run (default: all). The whole run takes about 2.5 minutes.

The committed trace.txt was recorded on 2026-11-30 with Debian's zookeeper
3.8.0-11+deb12u2 (server "3.8.0") and python3-kazoo 2.8.0.

Trace format, one line per request:

    <session> <op> <args...> => <outcome> zxid=<reply header zxid>

sessions are S1, S2, ... in connection order; strings are percent-encoded
(`%xx` for '%', space, control and non-ASCII bytes; `~` for empty data).
Outcomes: `ok ...` with fields, or `err <code>`. Stats print as
`czxid,mzxid,ctime,mtime,version,cversion,aversion,owner,dataLength,
numChildren,pzxid` where a non-zero time prints as `T<zxid>` (the script
checks that every non-zero ctime/mtime is the time of the txn that set it,
consistently across the run) and owner as a session label. After a request,
`<session> event <type> <path>` lines list the watch notifications each
session received, in order.
"""

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import namedtuple

from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol import connection as kconn
from kazoo.protocol.serialization import (
    Create,
    Create2,
    Delete,
    Exists,
    GetACL,
    GetChildren2,
    GetData,
    MultiHeader,
    SetACL,
    SetData,
    int_struct,
    multiheader_struct,
    read_string,
    stat_struct,
    write_string,
)
from kazoo.protocol import serialization as kser
from kazoo.protocol.states import ZnodeStat
from kazoo.security import ACL, Id

HOST = "127.0.0.1"
PORT = int(os.environ.get("ZK_PORT", "22181"))
DEFAULT_CP = ":".join(
    "/usr/share/java/%s.jar" % j
    for j in [
        "zookeeper",
        "zookeeper-jute",
        "slf4j-api",
        "slf4j-nop",
        "netty-handler",
        "netty-common",
        "netty-buffer",
        "netty-transport",
        "netty-codec",
        "netty-resolver",
        "netty-transport-native-epoll",
        "netty-transport-native-unix-common",
        "metrics-core",
        "commons-cli",
        "commons-io",
        "snappy-java",
    ]
)
OPEN_ACL = [ACL(31, Id("world", "anyone"))]


def _write_string(value):
    """kazoo sends "" as a null string; send it as an empty one (ZooKeeper's
    Java client does), so that the empty path can be probed."""
    if value is None:
        return int_struct.pack(-1)
    utf8 = value.encode("utf-8")
    return int_struct.pack(len(utf8)) + utf8


kser.write_string = _write_string
write_string = _write_string


# ---------------------------------------------------------------- requests


class Check(namedtuple("Check", "path version")):
    type = 13

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.version))

    @classmethod
    def deserialize(cls, b, offset):
        return True


class GetEphemerals(namedtuple("GetEphemerals", "prefix")):
    type = 103

    def serialize(self):
        return bytearray(write_string(self.prefix))

    @classmethod
    def deserialize(cls, b, offset):
        n = int_struct.unpack_from(b, offset)[0]
        offset += 4
        out = []
        for _ in range(max(n, 0)):
            s, offset = read_string(b, offset)
            out.append(s)
        return out


class GetAllChildrenNumber(namedtuple("GetAllChildrenNumber", "path")):
    type = 104

    def serialize(self):
        return bytearray(write_string(self.path))

    @classmethod
    def deserialize(cls, b, offset):
        return int_struct.unpack_from(b, offset)[0]


class Multi(namedtuple("Multi", "operations")):
    """multi with raw per-op results: (type, payload) where payload is the
    path (create), (path, stat) (create2), stat (setData), None (delete,
    check) or the error code (type -1)."""

    type = 14

    def serialize(self):
        b = bytearray()
        for op in self.operations:
            b.extend(MultiHeader(op.type, False, -1).serialize() + op.serialize())
        return b + multiheader_struct.pack(-1, True, -1)

    @classmethod
    def deserialize(cls, b, offset):
        results = []
        while True:
            typ, done, err = multiheader_struct.unpack_from(b, offset)
            offset += multiheader_struct.size
            if done:
                return results
            if typ == 1:
                p, offset = read_string(b, offset)
                results.append((typ, p))
            elif typ == 15:
                p, offset = read_string(b, offset)
                st = ZnodeStat._make(stat_struct.unpack_from(b, offset))
                offset += stat_struct.size
                results.append((typ, (p, st)))
            elif typ == 5:
                st = ZnodeStat._make(stat_struct.unpack_from(b, offset))
                offset += stat_struct.size
                results.append((typ, st))
            elif typ in (2, 13):
                results.append((typ, None))
            elif typ == -1:
                code = int_struct.unpack_from(b, offset)[0]
                offset += 4
                results.append((typ, code))
            else:
                raise RuntimeError("unknown multi result type %d" % typ)


# ---------------------------------------------------------------- events

EVENTS = []  # (client label, type, path), in arrival order
EVENTS_LOCK = threading.Lock()
_orig_read_watch_event = kconn.ConnectionHandler._read_watch_event


def _logging_read_watch_event(self, buffer, offset):
    typ, state, path = struct.unpack_from("!ii", buffer, offset) + (None,)
    p, _ = read_string(buffer, offset + 8)
    label = getattr(self.client, "_oracle_label", "?")
    with EVENTS_LOCK:
        EVENTS.append((label, typ, p))
    return _orig_read_watch_event(self, buffer, offset)


kconn.ConnectionHandler._read_watch_event = _logging_read_watch_event


def _watcher(event):
    pass


# ---------------------------------------------------------------- encoding


def enc(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    if s is None or len(s) == 0:
        return "~"
    out = []
    for byte in s:
        if byte <= 0x20 or byte >= 0x7F or byte in (ord("%"), ord("~"), ord(","), ord("|"), ord(";")):
            out.append("%%%02x" % byte)
        else:
            out.append(chr(byte))
    return "".join(out)


class Oracle:
    def __init__(self, name):
        self.name = name
        self.clients = {}
        self.dropped = []
        self.session_labels = {}
        self.zxid_time = {}
        self.lines = []
        self.seen_events = 0
        self.tmp = tempfile.mkdtemp(prefix="zk-oracle-")
        data = os.path.join(self.tmp, "data")
        os.makedirs(data)
        cfg = os.path.join(self.tmp, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(
                "tickTime=2000\ndataDir=%s\nclientPort=%d\n"
                "clientPortAddress=%s\nadmin.enableServer=false\n"
                "4lw.commands.whitelist=srvr\n" % (data, PORT, HOST)
            )
        cp = os.environ.get("ZK_CLASSPATH", DEFAULT_CP)
        self.log = open(os.path.join(self.tmp, "server.log"), "w")
        self.server = subprocess.Popen(
            ["java", "-cp", cp, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while True:
            try:
                if "Mode: standalone" in four_letter("srvr"):
                    break
            except OSError:
                pass
            if time.time() > deadline or self.server.poll() is not None:
                raise RuntimeError("server did not start; see " + self.log.name)
            time.sleep(0.2)
        self.out("# scenario " + name)

    def out(self, line):
        self.lines.append(line)
        print(line, flush=True)

    def finish(self):
        for c in list(self.clients.values()) + self.dropped:
            try:
                c.stop()
                c.close()
            except Exception:
                pass
        self.server.terminate()
        self.server.wait(timeout=30)
        self.log.close()
        if os.environ.get("ZK_KEEP") is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        with EVENTS_LOCK:
            EVENTS.clear()

    # -- formatting

    def time(self, t, z):
        if t == 0:
            return "0"
        known = self.zxid_time.setdefault(z, t)
        assert known == t, "zxid %d has two times %d and %d" % (z, known, t)
        return "T%d" % z

    def stat(self, st):
        owner = st.ephemeralOwner
        owner = self.session_labels.get(owner, "0" if owner == 0 else "?%x" % owner)
        return ",".join(
            str(x)
            for x in [
                st.czxid,
                st.mzxid,
                self.time(st.ctime, st.czxid),
                self.time(st.mtime, st.mzxid),
                st.version,
                st.cversion,
                st.aversion,
                owner,
                st.dataLength,
                st.numChildren,
                st.pzxid,
            ]
        )

    # -- sessions

    def connect(self, label):
        c = KazooClient(hosts="%s:%d" % (HOST, PORT), timeout=10.0)
        c._oracle_label = label
        c.start(timeout=15)
        self.clients[label] = c
        self.session_labels[c.client_id[0]] = label
        # the connect reply has no zxid; a read's reply header carries the
        # server's last zxid: the createSession's
        self.raw(label, Exists("/", None))
        self.out("%s connect => ok zxid=%d" % (label, c.last_zxid))
        self.settle()

    def close(self, label, observer):
        """Close a session, then read the zxid on another client."""
        c = self.clients.pop(label)
        c.stop()
        c.close()
        time.sleep(0.3)
        # a read's reply header carries the server's last zxid: the close's
        self.raw(observer, Exists("/", None))
        self.out("%s close => ok zxid=%d" % (label, self.clients[observer].last_zxid))
        self.settle()

    def settle(self):
        time.sleep(0.25)
        with EVENTS_LOCK:
            new = EVENTS[self.seen_events :]
            self.seen_events = len(EVENTS)
        # sessions receive their events independently: order by session,
        # keeping each session's arrival order
        new.sort(key=lambda e: int(e[0][1:]))
        for label, typ, path in new:
            self.out("%s event %d %s" % (label, typ, enc(path)))

    # -- requests

    def raw(self, label, req, timeout=10):
        c = self.clients[label]
        ar = c.handler.async_result()
        c._call(req, ar)
        try:
            return 0, ar.get(timeout=timeout)
        except KazooTimeoutError:
            return None, None
        except Exception as e:
            code = getattr(e, "code", None)
            if code is None:
                raise
            return code, None

    def run(self, label, text, req, fmt, timeout=10):
        code, res = self.raw(label, req, timeout)
        if code is None:
            # no reply: the connection is now out of step; drop the client
            # no reply: the connection is now out of step; close the session
            # and read the zxid on S1
            self.out("%s %s => noreply" % (label, text))
            self.close(label, "S1")
            return None, None
        if isinstance(req, Exists) and code == 0 and res is None:
            code = -101
        outcome = "err %d" % code if code != 0 else ("ok " + fmt(res)).rstrip()
        self.out("%s %s => %s zxid=%d" % (label, text, outcome, self.clients[label].last_zxid))
        self.settle()
        return code, res

    def create(self, label, path, flags=0, data=b"", acl=None):
        text = "create %s %d %s" % (enc(path), flags, enc(data))
        if acl is not None:
            text += " " + fmt_acl(acl)
        return self.run(
            label,
            text,
            Create2(path, data, OPEN_ACL if acl is None else acl, flags),
            lambda r: "path=%s stat=%s" % (enc(r[0]), self.stat(r[1])),
        )

    def delete(self, label, path, version=-1):
        return self.run(label, "delete %s %d" % (enc(path), version), Delete(path, version), lambda r: "")

    def set(self, label, path, data, version=-1):
        return self.run(
            label,
            "set %s %d %s" % (enc(path), version, enc(data)),
            SetData(path, data, version),
            lambda r: "stat=" + self.stat(r),
        )

    def check(self, label, path, version):
        return self.run(label, "check %s %d" % (enc(path), version), Check(path, version), lambda r: "", 3)

    def exists(self, label, path, watch=False):
        return self.run(
            label,
            "exists %s %d" % (enc(path), int(watch)),
            Exists(path, _watcher if watch else None),
            lambda r: "stat=" + self.stat(r),
        )

    def get(self, label, path, watch=False):
        return self.run(
            label,
            "get %s %d" % (enc(path), int(watch)),
            GetData(path, _watcher if watch else None),
            lambda r: "data=%s stat=%s" % (enc(r[0]), self.stat(r[1])),
        )

    def children(self, label, path, watch=False):
        return self.run(
            label,
            "children %s %d" % (enc(path), int(watch)),
            GetChildren2(path, _watcher if watch else None),
            lambda r: "kids=%s stat=%s" % (",".join(enc(k) for k in sorted(r[0])) or "~", self.stat(r[1])),
        )

    def acl(self, label, path):
        return self.run(
            label,
            "acl %s" % enc(path),
            GetACL(path),
            lambda r: "acl=%s stat=%s" % (fmt_acl(r[0]), self.stat(r[1])),
        )

    def setacl(self, label, path, acl, version=-1):
        return self.run(
            label,
            "setacl %s %d %s" % (enc(path), version, fmt_acl(acl)),
            SetACL(path, acl, version),
            lambda r: "stat=" + self.stat(r),
        )

    def ephemerals(self, label, prefix):
        return self.run(
            label,
            "ephemerals %s" % enc(prefix),
            GetEphemerals(prefix),
            lambda r: "paths=" + (",".join(enc(p) for p in sorted(r)) or "~"),
        )

    def count(self, label, path):
        return self.run(label, "count %s" % enc(path), GetAllChildrenNumber(path), lambda r: "n=%d" % r)

    def multi(self, label, ops):
        """ops: ("create", path, flags, data) / ("create2", ...) /
        ("delete", path, version) / ("set", path, version, data) /
        ("check", path, version)."""
        reqs, texts = [], []
        for op in ops:
            kind = op[0]
            if kind in ("create", "create2"):
                cls = Create if kind == "create" else Create2
                reqs.append(cls(op[1], op[3], OPEN_ACL, op[2]))
                texts.append("%s %s %d %s" % (kind, enc(op[1]), op[2], enc(op[3])))
            elif kind == "delete":
                reqs.append(Delete(op[1], op[2]))
                texts.append("delete %s %d" % (enc(op[1]), op[2]))
            elif kind == "set":
                reqs.append(SetData(op[1], op[3], op[2]))
                texts.append("set %s %d %s" % (enc(op[1]), op[2], enc(op[3])))
            elif kind == "check":
                reqs.append(Check(op[1], op[2]))
                texts.append("check %s %d" % (enc(op[1]), op[2]))

        def fmt(results):
            parts = []
            for typ, payload in results:
                if typ == 1:
                    parts.append("create:" + enc(payload))
                elif typ == 15:
                    parts.append("create2:%s:%s" % (enc(payload[0]), self.stat(payload[1])))
                elif typ == 5:
                    parts.append("set:" + self.stat(payload))
                elif typ == 2:
                    parts.append("delete")
                elif typ == 13:
                    parts.append("check")
                else:
                    parts.append("err:%d" % payload)
            return "results=" + "|".join(parts)

        return self.run(label, "multi " + " | ".join(texts) + " ;", Multi(reqs), fmt)


def fmt_acl(acl):
    return ";".join("%d:%s:%s" % (a.perms, enc(a.id.scheme), enc(a.id.id)) for a in acl) or "~"


def four_letter(cmd):
    with socket.create_connection((HOST, PORT), timeout=5) as s:
        s.sendall(cmd.encode())
        buf = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode()


# ---------------------------------------------------------------- scenarios


def fresh(o):
    o.connect("S1")
    for p in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"]:
        o.get("S1", p)
        o.acl("S1", p)
        o.children("S1", p)
    o.count("S1", "/")
    o.count("S1", "/zookeeper")
    o.ephemerals("S1", "/")


def create_modes(o):
    o.connect("S1")
    o.create("S1", "/p", 0, b"hello")
    o.create("S1", "/e", 1, b"x")
    o.create("S1", "/p/s-", 2)
    o.create("S1", "/p/s-", 3, b"abc")
    o.create("S1", "/p/", 2)
    o.create("S1", "/", 2)
    o.get("S1", "/p")
    o.children("S1", "/p")
    o.children("S1", "/")
    o.get("S1", "/e")
    o.ephemerals("S1", "/")
    o.ephemerals("S1", "/p")
    o.ephemerals("S1", "/e")
    o.ephemerals("S1", "/p/s")
    o.count("S1", "/")
    o.count("S1", "/p")
    o.count("S1", "/e")
    o.count("S1", "/missing")


def create_errors(o):
    o.connect("S1")
    o.create("S1", "/e", 1)
    o.create("S1", "/p", 0)
    o.create("S1", "/missing/x", 0)
    o.create("S1", "/p", 0)
    o.create("S1", "/p", 1)
    o.create("S1", "/e/x", 0)
    o.create("S1", "/e/x", 2)
    o.create("S1", "/e/", 2)
    o.set("S1", "/p", b"after failures")
    for bad in ["/p/", "//", "/.", "/..", "/p//x", "/p/.", "/p/..", "/p/./x", "p", "/p\x00x", "/nope/.", "/nope//x", "/p/a\x01"]:
        o.create("S1", bad, 0)
    for bad in ["//", "/p//", "/nope/", "/p/.", "/e/"]:
        o.create("S1", bad, 2)
    o.set("S1", "/p", b"after bad paths")
    o.create("S1", "/zookeeper/x", 0)
    o.create("S1", "/zookeeper/quota/x", 0)
    o.create("S1", "/zookeeper/config/x", 0)
    o.create("S1", "/zookeeper", 0)
    o.children("S1", "/zookeeper")
    o.get("S1", "/zookeeper")
    o.create("S1", "/bad-acl", 0, b"", [])
    o.create("S1", "/bad-acl", 0, b"", [ACL(31, Id("bogus", "x"))])
    o.create("S1", "/bad-acl", 0, b"", [ACL(31, Id("auth", ""))])
    o.create("S1", "/ro", 0, b"", [ACL(1, Id("world", "anyone"))])
    o.create("S1", "/ro/x", 0)
    o.set("S1", "/ro", b"x")
    o.delete("S1", "/ro")
    o.set("S1", "/p", b"end")


def sequential_counters(o):
    o.connect("S1")
    o.create("S1", "/q", 0)
    o.create("S1", "/q/a-", 2)
    o.create("S1", "/q/a-", 2)
    o.delete("S1", "/q/a-0000000001")
    o.create("S1", "/q/a-", 2)
    o.create("S1", "/q/x", 0)
    o.create("S1", "/q/b-", 2)
    o.get("S1", "/q")
    for k in ["a-0000000000", "a-0000000002", "x", "b-0000000004"]:
        o.delete("S1", "/q/" + k)
        o.exists("S1", "/q")
    o.create("S1", "/q/c-", 3)
    o.create("S1", "/q/x", 0)
    o.create("S1", "/q/x", 0)  # NodeExists does not move the counter
    o.create("S1", "/q/d-", 2)
    o.multi("S1", [("create", "/q/m-", 2, b""), ("create", "/q/m-", 2, b"")])
    o.multi("S1", [("create", "/q/n-", 2, b""), ("check", "/q", 99)])
    o.create("S1", "/q/o-", 2)
    o.children("S1", "/q")


def pzxid(o):
    o.connect("S1")
    o.create("S1", "/r", 0)
    o.exists("S1", "/r")
    o.create("S1", "/r/c", 0)
    o.exists("S1", "/r")
    o.set("S1", "/r/c", b"data")
    o.exists("S1", "/r")
    o.set("S1", "/r", b"parent data")
    o.exists("S1", "/r")
    o.create("S1", "/r/c/g", 0)
    o.exists("S1", "/r")
    o.exists("S1", "/r/c")
    o.delete("S1", "/r/c/g")
    o.delete("S1", "/r/c")
    o.exists("S1", "/r")
    o.exists("S1", "/")
    o.delete("S1", "/r/none")
    o.exists("S1", "/r")
    o.setacl("S1", "/r", [ACL(31, Id("world", "anyone"))], 0)
    o.exists("S1", "/r")


def versions(o):
    o.connect("S1")
    o.create("S1", "/v", 0, b"0")
    o.set("S1", "/v", b"1", 0)
    o.set("S1", "/v", b"2", 0)
    o.set("S1", "/v", b"3", -1)
    o.set("S1", "/v", b"4", 5)
    o.set("S1", "/v", b"", 2)
    o.get("S1", "/v")
    o.set("S1", "/none", b"x", -1)
    o.set("S1", "/v/", b"x", -1)
    o.set("S1", "/zookeeper/config", b"x", -1)
    o.set("S1", "/zookeeper/quota", b"q", -1)
    o.get("S1", "/zookeeper/quota")
    o.set("S1", "/", b"root", -1)
    o.get("S1", "/")
    o.create("S1", "/v/c", 0)
    o.delete("S1", "/v", 7)
    o.delete("S1", "/v", 3)
    o.delete("S1", "/v", -1)
    o.delete("S1", "/v/c", 1)
    o.delete("S1", "/v/c", 0)
    o.delete("S1", "/v", 2)
    o.delete("S1", "/v", 3)
    o.delete("S1", "/v", -1)
    for special in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"]:
        o.delete("S1", special, -1)
    o.delete("S1", "/none", -1)
    o.delete("S1", "/none/x", -1)
    o.delete("S1", "/v/", -1)
    o.delete("S1", "//", -1)
    o.create("S1", "/a", 0)
    o.setacl("S1", "/a", [ACL(31, Id("world", "anyone"))], 1)
    o.setacl("S1", "/a", [ACL(31, Id("world", "anyone"))], 0)
    o.setacl("S1", "/a", [ACL(1, Id("world", "anyone"))], -1)
    o.acl("S1", "/a")
    o.set("S1", "/a", b"x", -1)
    o.get("S1", "/a")
    o.setacl("S1", "/a", [ACL(31, Id("world", "anyone"))], -1)
    o.setacl("S1", "/a", [], -1)
    o.setacl("S1", "/a", [ACL(31, Id("bogus", "x"))], -1)
    o.exists("S1", "/a")
    o.set("S1", "/a", b"y", -1)


def standalone_check(o):
    """check (13) outside a multi: ZooKeeper 3.8 runs it as a txn but its
    FinalRequestProcessor has no reply body for it, so a successful check
    gets no reply at all (the server logs an NPE); each probe below uses a
    fresh session and reads the zxid on S1."""
    o.connect("S1")
    o.create("S1", "/v", 0)
    cases = [("/v", 0), ("/v", -1), ("/v", 5), ("/none", -1), ("/v/", -1)]
    for i, (path, version) in enumerate(cases):
        label = "S%d" % (i + 2)
        o.connect(label)
        o.check(label, path, version)
        o.exists("S1", "/v")


def multi(o):
    o.connect("S1")
    o.create("S1", "/m", 0)
    o.multi(
        "S1",
        [
            ("create", "/m/a", 0, b"A"),
            ("create2", "/m/b", 0, b"BB"),
            ("set", "/m", 0, b"m"),
            ("check", "/m", 1),
            ("delete", "/m/a", 0),
            ("create", "/m/s-", 2, b""),
        ],
    )
    o.get("S1", "/m")
    o.children("S1", "/m")
    o.get("S1", "/m/b")
    o.multi("S1", [("create", "/m/x", 0, b""), ("set", "/m", 99, b""), ("create", "/m/y", 0, b"")])
    o.get("S1", "/m")
    o.children("S1", "/m")
    o.multi("S1", [("create", "/m/x", 0, b""), ("create", "/m/x", 0, b""), ("delete", "/m/b", -1)])
    o.multi("S1", [("delete", "/m/b", -1), ("delete", "/m", -1)])
    o.multi("S1", [("set", "/m/b", -1, b"z"), ("delete", "/m/b", 1)])
    o.multi("S1", [("check", "/none", -1), ("create", "/m/z", 0, b"")])
    o.multi("S1", [("create", "/m/bad/", 0, b""), ("create", "/m/ok", 0, b"")])
    o.multi("S1", [])
    o.multi("S1", [("check", "/m", 1)])
    o.get("S1", "/m")
    o.children("S1", "/m")
    o.get("S1", "/m/b")
    o.set("S1", "/m", b"after", -1)


def sessions(o):
    o.connect("S1")
    o.connect("S2")
    o.create("S1", "/eph", 1)
    o.create("S1", "/p2", 0)
    o.create("S1", "/p2/e", 1)
    o.create("S1", "/p2/s-", 3)
    o.create("S2", "/p2/mine", 1)
    o.ephemerals("S1", "/")
    o.ephemerals("S2", "/")
    o.exists("S2", "/eph", True)
    o.get("S2", "/p2/e", True)
    o.children("S2", "/p2", True)
    o.children("S2", "/", True)
    o.exists("S2", "/p2", True)
    o.close("S1", "S2")
    o.children("S2", "/p2")
    o.exists("S2", "/")
    o.exists("S2", "/eph")
    o.ephemerals("S2", "/")
    o.count("S2", "/")


def watches(o):
    o.connect("S1")
    o.connect("S2")
    o.exists("S2", "/w", True)
    o.create("S1", "/w", 0)
    o.get("S2", "/w", True)
    o.get("S2", "/w", True)
    o.exists("S2", "/w", True)
    o.set("S1", "/w", b"1")
    o.set("S1", "/w", b"2")
    o.children("S2", "/w", True)
    o.set("S1", "/w", b"3")
    o.create("S1", "/w/c", 0)
    o.delete("S1", "/w/c")
    o.get("S2", "/w", True)
    o.set("S1", "/w", b"4", 99)
    o.multi("S1", [("set", "/w", -1, b"5"), ("check", "/w", 99)])
    o.set("S1", "/w", b"6")
    o.get("S2", "/w", True)
    o.children("S2", "/w", True)
    o.exists("S1", "/w", True)
    o.children("S1", "/", True)
    o.delete("S1", "/w")
    o.exists("S2", "/none", True)
    o.get("S2", "/none2", True)
    o.children("S2", "/none3", True)
    o.create("S1", "/none2", 0)
    o.create("S1", "/none3", 0)
    o.create("S1", "/none", 0)
    o.get("S2", "/none", True)
    o.children("S2", "/none", True)
    o.multi("S1", [("create", "/none/k", 0, b""), ("set", "/none", -1, b"d"), ("delete", "/none2", -1)])
    o.children("S2", "/", True)
    o.get("S1", "/none/k", True)
    o.close("S1", "S2")
    o.exists("S2", "/none/k")


def acls(o):
    o.connect("S1")
    W = lambda perms: [ACL(perms, Id("world", "anyone"))]
    o.create("S1", "/w-only", 0, b"d", W(2))
    o.get("S1", "/w-only")
    o.exists("S1", "/w-only")
    o.exists("S1", "/w-only", True)
    o.children("S1", "/w-only")
    o.acl("S1", "/w-only")
    o.count("S1", "/w-only")
    o.set("S1", "/w-only", b"e")
    o.create("S1", "/w-only/c", 0)
    o.delete("S1", "/w-only/c")
    o.setacl("S1", "/w-only", W(31))
    o.create("S1", "/admin", 0, b"", W(16))
    o.acl("S1", "/admin")
    o.get("S1", "/admin")
    o.setacl("S1", "/admin", W(16 | 4), 0)
    o.create("S1", "/admin/c", 0)
    o.delete("S1", "/admin/c")
    o.create("S1", "/nodel", 0, b"", W(31 & ~8))
    o.create("S1", "/nodel/c", 0)
    o.delete("S1", "/nodel/c")
    o.delete("S1", "/nodel/none")
    o.delete("S1", "/nodel")
    o.create("S1", "/zero", 0, b"", W(0))
    o.exists("S1", "/zero")
    o.acl("S1", "/zero")
    o.create("S1", "/big", 0, b"", W(0x7FFFFFFF))
    o.acl("S1", "/big")
    o.set("S1", "/big", b"x")
    digest = ACL(31, Id("digest", "user:c2VjcmV0aGFzaA=="))
    o.create("S1", "/dig", 0, b"", [ACL(1, Id("world", "anyone")), digest])
    o.acl("S1", "/dig")
    o.create("S1", "/dig2", 0, b"", [ACL(17, Id("world", "anyone")), digest])
    o.acl("S1", "/dig2")
    o.create("S1", "/digonly", 0, b"", [digest])
    o.acl("S1", "/digonly")
    o.exists("S1", "/digonly")
    o.get("S1", "/digonly")
    o.create("S1", "/dup", 0, b"", W(31) + W(31) + W(1))
    o.acl("S1", "/dup")
    for i, acl in enumerate(
        [
            [ACL(31, Id("ip", "10.0.0.1"))],
            [ACL(31, Id("ip", "10.0.0.0/8"))],
            [ACL(31, Id("ip", "10.0.0.1/33"))],
            [ACL(31, Id("ip", "10.0.0"))],
            [ACL(31, Id("ip", "bad"))],
            [ACL(31, Id("ip", "::1"))],
            [ACL(31, Id("ip", "10.0.0.01"))],
            [ACL(31, Id("ip", " 10.0.0.1"))],
            [ACL(31, Id("digest", "nocolon"))],
            [ACL(31, Id("digest", "a:b:c"))],
            [ACL(31, Id("digest", "a:"))],
            [ACL(31, Id("digest", ":b"))],
            [ACL(31, Id("world", "someone"))],
            [ACL(31, Id("world", ""))],
            [ACL(31, Id("super", "x"))],
            [ACL(31, Id("sasl", "x"))],
            [ACL(31, Id("auth", ""))],
            [ACL(31, Id("auth", "x"))],
            [ACL(31, Id("World", "anyone"))],
        ]
    ):
        o.create("S1", "/acl%d" % i, 0, b"", acl)
    o.acl("S1", "/acl0")
    o.create("S1", "/acl0/c", 0)
    o.set("S1", "/acl0", b"x")
    o.setacl("S1", "/zookeeper/config", W(31))
    o.setacl("S1", "/zookeeper", W(31), 0)
    o.acl("S1", "/zookeeper")


def paths(o):
    o.connect("S1")
    o.create("S1", "/p", 0)
    for name in ["a\u00a0", "a\u00e4", "a\u007f", "a\u009f", "a\u001f", "a\ud7ff", "a\ue000",
                 "a\uf8ff", "a\uf900", "a\uffef", "a\ufff0", "a\uffff", "a\U0001f600", "a b", "...",
                 "a..", ".a", "a%", "\u00e4\u00f6\u00fc"]:
        o.create("S1", "/p/" + name, 0)
    o.children("S1", "/p")
    o.create("S1", "/p/\u00e4-", 2)
    o.create("S1", "/p/a\x01", 2)
    o.create("S1", "/p/x\x00", 2)
    for p in ["", "/p/", "/p\x00", "//", "p"]:
        o.exists("S1", p)
        o.get("S1", p)
        o.children("S1", p)
        o.acl("S1", p)
        o.count("S1", p)
    o.create("S1", "", 0)
    o.create("S1", "", 2)
    o.delete("S1", "")
    o.set("S1", "", b"x")
    o.setacl("S1", "", OPEN_ACL)
    o.delete("S1", "/p\x00")
    o.delete("S1", "p")
    o.set("S1", "/p\x00", b"x")
    o.setacl("S1", "/p/", OPEN_ACL)
    o.create("S1", "/e", 1)
    o.create("S1", "/e2", 1)
    o.create("S1", "/p/e", 1)
    for prefix in ["", "/", " / ", "/e", "e", "/p", "/p/", "/e2", " /e"]:
        o.ephemerals("S1", prefix)


def multi_more(o):
    o.connect("S1")
    o.multi("S1", [("create", "/a", 0, b""), ("create", "/a/b", 0, b""), ("delete", "/a/b", -1), ("delete", "/a", -1)])
    o.exists("S1", "/")
    o.multi("S1", [("create", "/a", 0, b"1"), ("set", "/a", 0, b"2"), ("set", "/a", 1, b"3"), ("check", "/a", 2)])
    o.get("S1", "/a")
    o.multi("S1", [("create", "/e", 1, b""), ("create", "/e/x", 0, b"")])
    o.exists("S1", "/e")
    o.multi("S1", [("delete", "/a", -1), ("create", "/a", 0, b"new")])
    o.get("S1", "/a")
    o.exists("S1", "/")
    o.multi("S1", [("set", "/none", -1, b""), ("create", "/k", 0, b"")])
    o.multi("S1", [("check", "/a", 7), ("check", "/a", 8)])
    o.multi("S1", [("create", "/k", 0, b""), ("create", "/k/", 0, b"")])
    o.multi("S1", [("create", "/k", 0, b""), ("delete", "/", -1)])
    o.multi("S1", [("create", "/k", 0, b""), ("create", "/k\x00", 0, b"")])
    o.multi("S1", [("create", "/s", 0, b""), ("create", "/s/n-", 2, b""), ("delete", "/s/n-0000000000", -1), ("create", "/s/n-", 2, b"")])
    o.children("S1", "/s")
    o.multi("S1", [("create", "/s/m-", 2, b""), ("delete", "/s/m-0000000002", -1), ("check", "/s", 5)])
    o.exists("S1", "/s")
    o.multi("S1", [("create", "/t", 1, b""), ("delete", "/t", -1)])
    o.ephemerals("S1", "/")
    o.multi("S1", [("create", "/u", 1, b""), ("check", "/u", 0)])
    o.ephemerals("S1", "/")
    o.multi("S1", [("delete", "/u", -1), ("check", "/u", -1)])
    o.ephemerals("S1", "/")
    o.exists("S1", "/")


def seq_collision(o):
    o.connect("S1")
    o.create("S1", "/q", 0)
    o.create("S1", "/q/x0000000001", 0)
    o.create("S1", "/q/x", 2)
    o.create("S1", "/q/x", 2)
    o.create("S1", "/q/x", 2)
    o.exists("S1", "/q")


def close_order(o):
    o.connect("S1")
    o.connect("S2")
    names = ["/e%d" % i for i in range(12)] + ["/a", "/b", "/zz", "/Z", "/lock-", "/m/x"]
    o.create("S1", "/m", 0)
    for n in names:
        o.create("S1", n, 3 if n.endswith("-") else 1)
    o.ephemerals("S1", "/")
    for n in names[:-1] + ["/lock-0000000017"]:
        o.exists("S2", n, True)
    o.close("S1", "S2")


def watch_acl(o):
    o.connect("S1")
    o.connect("S2")
    W = lambda perms: [ACL(perms, Id("world", "anyone"))]
    o.create("S1", "/n", 0, b"", W(2 | 16))
    o.exists("S2", "/n", True)
    o.setacl("S1", "/n", W(31))
    o.set("S1", "/n", b"1")
    o.get("S2", "/n", True)
    o.setacl("S1", "/n", W(2 | 16))
    o.set("S1", "/n", b"2")
    o.setacl("S1", "/n", W(31))
    o.set("S1", "/n", b"3")
    o.exists("S2", "/n", True)
    o.delete("S1", "/n")


SCENARIOS = [
    fresh,
    create_modes,
    create_errors,
    sequential_counters,
    pzxid,
    versions,
    standalone_check,
    multi,
    sessions,
    watches,
    acls,
    paths,
    multi_more,
    seq_collision,
    close_order,
    watch_acl,
]


def main():
    only = sys.argv[1:]
    first = True
    for scenario in SCENARIOS:
        if only and scenario.__name__ not in only:
            continue
        o = Oracle(scenario.__name__)
        try:
            if first:
                version = four_letter("srvr").splitlines()[0]
                print("# " + version, flush=True)
                first = False
            scenario(o)
        finally:
            o.finish()


if __name__ == "__main__":
    main()
