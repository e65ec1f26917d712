"""Handler sources used by the runtime tests (each is the ``main.py`` of a package)."""

ECHO = """
import os

def handle(event, context):
    return {
        "event": event,
        "pid": os.getpid(),
        "version": context.version,
        "function": context.function_name,
        "invocation_id": context.invocation_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "cwd": os.getcwd(),
    }
"""

ENV = """
import os

def handle(event, context):
    return {"env": dict(os.environ)}
"""

VERSION = """
import os, time

VERSION = {version}

def handle(event, context):
    time.sleep(event.get("sleep", 0))
    return {{"version": VERSION, "pid": os.getpid()}}
"""

MISBEHAVE = """
import ctypes, os, signal, sys, time

def handle(event, context):
    what = event.get("do")
    if what == "raise":
        raise ValueError("bad order id 42")
    if what == "not_json":
        return {"when": object()}
    if what == "sleep":
        time.sleep(event["seconds"])
    if what == "spin":
        while True:
            pass
    if what == "exit":
        sys.exit(3)
    if what == "os_exit":
        os._exit(7)
    if what == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if what == "close_stdout":
        sys.stdout.close()
        os.close(1)
        os.close(2)
        return {"closed": True}
    if what == "fork_and_linger":
        child = os.fork()
        if child == 0:
            time.sleep(3600)
        return {"child": child, "pid": os.getpid()}
    if what == "fork_and_spin":
        child = os.fork()
        if child:
            with open(event["file"], "w") as out:
                out.write(str(child))
        while True:
            pass
    if what == "fork_and_return":
        child = os.fork()
        return {"from": "child" if child == 0 else "parent", "pid": os.getpid()}
    if what == "allocate":
        block = bytearray(event["mb"] * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        return {"allocated_mb": event["mb"], "pid": os.getpid()}
    print("answering", what)
    return {"ok": True, "pid": os.getpid()}
"""

BLOCKER = """
import os, time

def handle(event, context):
    marker = os.path.join(event["dir"], context.invocation_id)
    open(marker, "w").close()
    release = os.path.join(event["dir"], "release")
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"pid": os.getpid()}
"""
