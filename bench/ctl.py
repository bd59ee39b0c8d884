"""Node-side control channel: JSON lines on stdin (requests) and stdout (replies).

Every node process prints ``{"event": "ready", ...}`` once it listens, then answers
``{"id": n, "cmd": name, "args": {...}}`` with ``{"id": n, "ok": true, "result": ...}``.
End of stdin (the harness died or closed the pipe) stops the process, so no node outlives
its harness; the harness also kills the whole process group.
"""
import asyncio
import inspect
import json
import os
import sys
import threading
import time
import traceback

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def base_stats(extra=None):
    d = {"cpu": cpu_seconds(), "rss": rss_bytes(), "pid": os.getpid(), "wall": time.monotonic()}
    if extra:
        d.update(extra)
    return d


#: commands answered straight from the reader thread, so that a node whose event loop has a
#: long queue of pending datagram callbacks still gives its counters at the moment asked (they
#: only read or set plain counters and flags)
DIRECT = frozenset({"stats", "reset", "bulk_stop", "sink_stats", "sink_reset", "ping"})


class Control:
    def __init__(self, loop, handlers, on_exit, direct=DIRECT):
        self.direct = direct
        self._wlock = threading.Lock()
        self.loop = loop
        self.handlers = dict(handlers)
        self.handlers.setdefault("ping", lambda: "pong")
        self.handlers.setdefault("quit", self._quit)
        self.on_exit = on_exit
        self._out = sys.stdout
        # Nothing else may write on stdout: it is the control channel.
        sys.stdout = sys.stderr

    def _quit(self):
        self.loop.call_later(0.01, self.on_exit)
        return "bye"

    def write(self, obj):
        line = json.dumps(obj) + "\n"
        with self._wlock:
            self._out.write(line)
            self._out.flush()

    def ready(self, **info):
        info["event"] = "ready"
        info["pid"] = os.getpid()
        self.write(info)

    def start(self):
        self._ppid = os.getppid()
        threading.Thread(target=self._reader, daemon=True).start()
        threading.Thread(target=self._watch_parent, daemon=True).start()

    def _die(self):
        """Stop politely through the loop; if the loop is too busy to do it within a second
        (a backlog of datagram callbacks), leave anyway."""
        try:
            self.loop.call_soon_threadsafe(self.on_exit)
        except RuntimeError:
            pass
        time.sleep(1.0)
        os._exit(0)

    def _watch_parent(self):
        # the harness died without closing our stdin (should not happen, but never linger)
        while os.getppid() == self._ppid:
            time.sleep(0.5)
        self._die()

    def _reader(self):
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line).get("cmd")
            except ValueError:
                continue
            if cmd in self.direct:
                self._dispatch(line)
            else:
                self.loop.call_soon_threadsafe(self._dispatch, line)
        self._die()

    def _dispatch(self, line):
        try:
            msg = json.loads(line)
        except ValueError:
            return
        rid = msg.get("id")
        try:
            res = self.handlers[msg["cmd"]](**msg.get("args", {}))
        except Exception as e:  # reported to the harness
            self.write({"id": rid, "ok": False, "error": "%s: %s" % (type(e).__name__, e),
                        "tb": traceback.format_exc()})
            return
        if inspect.isawaitable(res):
            fut = asyncio.ensure_future(res)

            def done(f):
                if f.cancelled():
                    self.write({"id": rid, "ok": False, "error": "cancelled"})
                elif f.exception() is not None:
                    e = f.exception()
                    self.write({"id": rid, "ok": False, "error": "%s: %s" % (type(e).__name__, e),
                                "tb": "".join(traceback.format_exception(e))})
                else:
                    self.write({"id": rid, "ok": True, "result": f.result()})
            fut.add_done_callback(done)
        else:
            self.write({"id": rid, "ok": True, "result": res})


def serve_on_reactor(reactor, handlers, **ready):
    """Run a node process on Twisted's asyncio ``reactor``: answer ``handlers`` once it runs, stop
    when the harness says so (or goes away), and leave at once afterwards."""
    def stop():
        if reactor.running:
            reactor.stop()

    def started():
        control = Control(reactor._asyncioEventloop, handlers, stop)
        control.start()
        control.ready(**ready)

    reactor.callWhenRunning(started)
    try:
        reactor.run()
    finally:
        sys.stderr.flush()
        os._exit(0)
