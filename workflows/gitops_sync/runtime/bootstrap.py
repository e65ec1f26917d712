"""The worker process: imports one function's handler once, then serves invocations one at a time.

Run as ``python -I -S bootstrap.py CONFIG_JSON``; STDLIB ONLY (it must start fast and under any
supported Python). Frames on the request/response pipes are ``>II`` (meta length, payload length),
meta JSON, payload bytes. The handler's stdout/stderr go to the log pipe, never the protocol pipe.
"""

import importlib
import json
import os
import resource
import struct
import sys
import threading
import time

HEADER = struct.Struct(">II")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
LOG_MARK = "\x1e"  # a line written through our streams: MARK invocation TAB stream TAB text
LOGGING_READY: list = []
LOG_STREAM: list = [sys.__stderr__]  # main() puts our tagged stderr here


def write_frame(fd, meta, payload=b""):
    data = json.dumps(meta).encode()
    view = memoryview(HEADER.pack(len(data), len(payload)) + data + payload)
    while view:
        view = view[os.write(fd, view) :]


def read_frame(fd):
    """One request frame (usually one read); None at EOF. The server sends one frame at a time."""
    buf = os.read(fd, 1 << 16)
    if not buf:
        return None
    while len(buf) < HEADER.size:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return None
        buf += chunk
    meta_len, payload_len = HEADER.unpack_from(buf)
    end = HEADER.size + meta_len + payload_len
    if len(buf) < end:
        parts = [buf]
        have = len(buf)
        while have < end:
            chunk = os.read(fd, min(end - have, 1 << 20))
            if not chunk:
                return None
            parts.append(chunk)
            have += len(chunk)
        buf = b"".join(parts)
    meta = json.loads(buf[HEADER.size : HEADER.size + meta_len]) if meta_len else {}
    return meta, buf[HEADER.size + meta_len : end]


class TaggedStream:
    """A text stream that writes whole lines to an fd, each tagged with the current invocation."""

    def __init__(self, fd, stream):
        self.fd = fd
        self.stream = stream
        self.invocation = ""
        self.pending = ""
        self.closed = False
        self.broken = False

    def write(self, text):
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        self.pending += text
        if "\n" in self.pending:
            lines, _, self.pending = self.pending.rpartition("\n")
            self._emit(lines)
        return len(text)

    def _emit(self, lines):
        prefix = LOG_MARK + self.invocation + "\t" + self.stream + "\t"
        data = "".join(prefix + line + "\n" for line in lines.split("\n"))
        try:
            os.write(self.fd, data.encode("utf-8", "replace"))
        except OSError:  # the handler closed our fd: the worker is replaced afterwards
            self.broken = True

    def flush(self):
        if self.pending:
            pending, self.pending = self.pending, ""
            self._emit(pending)

    def close(self):
        self.flush()
        self.closed = True

    def isatty(self):
        return False

    def writable(self):
        return True

    def fileno(self):
        return self.fd

    @property
    def encoding(self):
        return "utf-8"


class Context:
    """What a handler gets besides its event (named like AWS Lambda's context)."""

    def __init__(self, config, invocation_id, timeout):
        self.function_name = config["function"]
        self.function_version = config["version"]
        self.version = config["version"]
        self.invocation_id = invocation_id
        self.aws_request_id = invocation_id
        self.memory_limit_in_mb = config["memory_mb"]
        self.deadline = time.time() + timeout
        self._deadline = time.monotonic() + timeout

    @property
    def logger(self):
        configure_logging()
        return sys.modules["logging"].getLogger("function." + self.function_name)

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def configure_logging():
    """Handler logging goes to our stderr stream; imported only when used (faster cold start)."""
    import logging

    if not LOGGING_READY:
        logging.basicConfig(stream=LOG_STREAM[0], level=logging.INFO, format=LOG_FORMAT)
        LOGGING_READY.append(True)


def format_exc():
    import traceback

    return traceback.format_exc().rstrip("\n")


def watch_parent(fd):
    """The lifeline: the server holds its write end; EOF means the server is gone, so we go too."""
    while True:
        try:
            if not os.read(fd, 1):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    try:
        os.killpg(0, 9)  # takes anything the handler forked along
    finally:
        os._exit(70)


def vm_size_bytes():
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def limit_memory(memory_mb):
    """RLIMIT_AS = what this bare worker already reserves + the function's memory_mb."""
    try:
        base = vm_size_bytes()
    except OSError:
        return 0
    if base:
        limit = base + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return base


def fd_identity(fd):
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def run_one(config, handler, meta, payload, streams):
    """Calls the handler for one request; returns (response meta, payload bytes)."""
    invocation = meta["id"]
    for stream in streams:
        stream.invocation = invocation
    if "logging" in sys.modules:
        configure_logging()
    context = Context(config, invocation, meta["timeout"])
    try:
        event = json.loads(payload) if payload else {}
        result = handler(event, context)
    except MemoryError:
        return {"kind": "memory", "recycle": True}, b""
    except SystemExit as exc:
        message = f"handler called sys.exit({exc.code!r})"
        return {"kind": "error", "type": "SystemExit", "message": message, "recycle": True}, b""
    except BaseException as exc:
        print(format_exc(), file=streams[1])
        return {"kind": "error", "type": type(exc).__name__, "message": str(exc)}, b""
    try:
        body = json.dumps(result, separators=(",", ":"), allow_nan=False).encode()
    except MemoryError:
        return {"kind": "memory", "recycle": True}, b""
    except (TypeError, ValueError) as exc:
        message = f"handler returned a value that is not JSON-serialisable: {exc}"
        return {"kind": "error", "type": type(exc).__name__, "message": message}, b""
    return {"kind": "ok"}, body


def worker_main(config):
    """Serves one function version: import the handler, answer ready, then one request at a time."""
    req_fd, resp_fd, life_fd = config["req_fd"], config["resp_fd"], config["life_fd"]
    threading.stack_size(256 * 1024)  # its 8 MiB default would count against RLIMIT_AS
    threading.Thread(target=watch_parent, args=(life_fd,), daemon=True).start()
    threading.stack_size(0)
    pid = os.getpid()
    forked = []
    os.register_at_fork(after_in_parent=lambda: forked.append(1))
    base = 0 if config.get("cgroup_procs") else limit_memory(config["memory_mb"])

    out, err = TaggedStream(1, "stdout"), TaggedStream(2, "stderr")
    streams = (out, err)
    LOG_STREAM[0] = err
    log_fds = (fd_identity(1), fd_identity(2))
    sys.stdout, sys.stderr = out, err

    root = config["root"]
    sys.path[:0] = [root, os.path.join(root, "_include"), os.path.join(root, "_deps")]
    module_name, _, func_name = config["handler"].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        if not callable(handler):
            raise TypeError("{} is not callable".format(config["handler"]))
    except BaseException as exc:
        print(format_exc(), file=err)
        err.flush()
        message = "handler {} could not be loaded: {}: {}".format(
            config["handler"],
            type(exc).__name__,
            exc,
        )
        write_frame(resp_fd, {"kind": "load_error", "message": message})
        os._exit(3)
    if "logging" in sys.modules:
        configure_logging()
    limit = "cgroup" if config.get("cgroup_procs") else "rlimit"
    write_frame(resp_fd, {"kind": "ready", "base_bytes": base, "pid": pid, "limit": limit})

    while True:
        frame = read_frame(req_fd)
        if frame is None:
            os._exit(0)  # the server closed our request pipe: stop
        reply, body = run_one(config, handler, frame[0], frame[1], streams)
        if os.getpid() != pid:
            os._exit(0)  # a forked copy of the worker: it must never answer
        for stream in streams:
            stream.flush()
            stream.invocation = ""
        healthy = (
            not forked
            and sys.stdout is out
            and sys.stderr is err
            and not out.closed
            and not err.closed
            and not out.broken
            and not err.broken
            and (fd_identity(1), fd_identity(2)) == log_fds
        )
        if not healthy:
            reply["recycle"] = True
        sys.stdout, sys.stderr = out, err
        write_frame(resp_fd, reply, body)


def zygote_main(control_fd):
    """The fork server: forks a worker per request on the control socket, reports its exit.

    Forking this warm, single-threaded interpreter skips interpreter start-up and stdlib imports.
    Each worker's response pipe is kept here until the worker exits, then its exit status is
    written on it as a last frame, so the server learns how a worker ended without being its parent.
    """
    import logging  # noqa: F401 - preloaded: most handlers log, and tracebacks need these
    import signal
    import socket
    import traceback  # noqa: F401

    control = socket.socket(fileno=control_fd)
    exits: dict = {}

    def reap(_signum, _frame):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = exits.pop(pid, None)
            if fd is None:
                continue
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            try:
                os.set_blocking(fd, False)
                write_frame(fd, {"kind": "exited", "code": code})
            except OSError:
                pass  # the server no longer listens to this worker
            os.close(fd)

    signal.signal(signal.SIGCHLD, reap)
    while True:
        message, fds, _flags, _addr = socket.recv_fds(control, 1 << 20, 4)
        if not message:
            os._exit(0)  # the server is gone
        request = json.loads(message)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                    control.close()
                    start_worker(request, fds)
                finally:
                    os._exit(70)
            exits[pid] = fds[1]
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for fd in (fds[0], fds[2], fds[3]):
            os.close(fd)
        control.send(json.dumps({"pid": pid}).encode())


def start_worker(request, fds):
    """In a freshly forked child: own session, log pipe as stdout/stderr, built env, then serve."""
    req_fd, resp_fd, life_fd, log_fd = fds
    os.setsid()
    config = dict(request["config"], req_fd=req_fd, resp_fd=resp_fd, life_fd=life_fd)
    if config.get("cgroup_procs"):
        try:  # join our memory cgroup before anything of the function is loaded
            with open(config["cgroup_procs"], "w") as procs:
                procs.write(str(os.getpid()))
        except OSError:
            config["cgroup_procs"] = None  # then RLIMIT_AS caps us instead
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    keep = {0, 1, 2, req_fd, resp_fd, life_fd}
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:  # the listing's own fd
                continue
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    worker_main(config)


def main():
    config = json.loads(sys.argv[1])
    if "control_fd" in config:
        zygote_main(config["control_fd"])
    else:
        worker_main(config)


if __name__ == "__main__":
    main()
