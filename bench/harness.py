"""Parent side: start one OS process per node and talk to it over its stdin/stdout."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg, *args):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), (msg % args) if args else msg))
    sys.stderr.flush()


class NodeError(RuntimeError):
    pass


class Node:
    """One node process.  ``call(cmd, **args)`` sends a request and waits for its reply."""

    def __init__(self, name, module, args, logdir, timeout=30.0):
        self.name = name
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        self.logpath = os.path.join(logdir, "%s.log" % name)
        self._log = open(self.logpath, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module] + [str(a) for a in args],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True, bufsize=1, start_new_session=True)
        self._q = queue.Queue()
        self._pending = {}
        self._next = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.info = self._wait_ready(timeout)

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("event") == "ready":
                self._q.put(msg)
                continue
            with self._lock:
                slot = self._pending.get(msg.get("id"))
            if slot is not None:
                slot.put(msg)
        self._q.put(None)

    def _tail(self, n=25):
        try:
            self._log.flush()
            with open(self.logpath) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def _wait_ready(self, timeout):
        try:
            msg = self._q.get(timeout=timeout)
        except queue.Empty:
            msg = None
        if msg is None:
            raise NodeError("%s did not start:\n%s" % (self.name, self._tail()))
        return msg

    @property
    def addr(self):
        return tuple(self.info["addr"])

    def call(self, cmd, timeout=60.0, **args):
        with self._lock:
            self._next += 1
            rid = self._next
            slot = self._pending[rid] = queue.Queue()
        try:
            self.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, "args": args}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise NodeError("%s is gone:\n%s" % (self.name, self._tail()))
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    msg = slot.get(timeout=0.5)
                    break
                except queue.Empty:
                    if self.proc.poll() is not None:
                        raise NodeError("%s exited (rc %s) during %s:\n%s"
                                        % (self.name, self.proc.returncode, cmd, self._tail()))
                    if time.monotonic() > deadline:
                        raise NodeError("%s: %s timed out after %.0f s" % (self.name, cmd, timeout))
        finally:
            with self._lock:
                self._pending.pop(rid, None)
        if not msg.get("ok"):
            raise NodeError("%s: %s failed: %s\n%s" % (self.name, cmd, msg.get("error"), msg.get("tb", "")))
        return msg.get("result")

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                continue
        # the group may still hold children (e.g. Rust worker threads are threads, not processes,
        # but be safe): a last SIGKILL to the group
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._log.close()
        except OSError:
            pass


class Cluster:
    """Owns node processes; ``close()`` (or the context manager) kills every one of them."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.nodes = []

    def start(self, name, module, *args, timeout=30.0):
        node = Node(name, module, list(args), self.logdir, timeout=timeout)
        self.nodes.append(node)
        return node

    def remove(self, node):
        if node in self.nodes:
            self.nodes.remove(node)
        node.kill()

    def close(self):
        while self.nodes:
            self.nodes.pop().kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
