"""TensorFlow's native start-up notices kept off the console.

TensorFlow's C++ core writes to the process's stderr before its own log level applies: absl's
"All log messages before absl::InitializeLog()", "Could not find cuda drivers", the CPU
instruction notice, and on a machine without a GPU "failed call to cuInit: ... (303)", which
reads as a failure though nothing failed. No switch silences them all, so the console command
passes its stderr through a filter that drops those lines and forwards every other byte.
`--verbose`, or a TF_CPP_MIN_LOG_LEVEL the user set, keeps them.
"""

import atexit
import os
import re
import sys
import threading

NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"  # native INFO and WARNING lines
    rb"|E\d{4} [\d:.]+\s+\d+ \S+:\d+\] (failed call to cuInit|Unable to register cu)"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
    rb"|WARNING: Logging before InitGoogleLogging"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$)")
NOISE_STARTS = (b"W", b"I", b"E", b"T")  # how a NOISE line can begin
VERBOSE_FLAGS = ("-v", "-vv", "-vvv", "--verbose")
_real_stderr: int | None = None  # the console's own stderr while the filter runs


def wanted(argv, environ=os.environ) -> bool:
    """Whether to filter: not when the user asked for the notices (``--verbose``) or set
    TensorFlow's own log level."""
    return "TF_CPP_MIN_LOG_LEVEL" not in environ and not set(argv) & set(VERBOSE_FLAGS)


def filter_stderr() -> None:
    """Route file descriptor 2 (native code's and Python's stderr) through a thread that drops
    NOISE lines; the rest reaches the real stderr, and all of it is flushed at exit."""
    global _real_stderr
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # later native INFO and WARNING lines
    sys.stderr.flush()
    real = _real_stderr = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    thread = threading.Thread(target=_forward, args=(read, real), daemon=True)
    thread.start()

    def drain():
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last writer in this process: the reader ends
        thread.join(timeout=5)

    atexit.register(drain)


def release() -> None:
    """Give file descriptor 2 back to the real stderr, before the process becomes another
    program (os.exec*): the filter's thread does not survive that, and a write to a pipe
    nobody reads would kill the new program (SIGPIPE)."""
    if _real_stderr is not None:
        sys.stderr.flush()
        os.dup2(_real_stderr, 2)


def _forward(read: int, real: int) -> None:
    pending = b""
    while chunk := os.read(read, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        kept = [line + b"\n" for line in lines if not NOISE.match(line)]
        if pending[:1] not in (b"", *NOISE_STARTS):  # a prompt or a bar: no need to wait
            kept.append(pending)
            pending = b""
        if kept:
            os.write(real, b"".join(kept))
    if pending and not NOISE.match(pending):
        os.write(real, pending)
    os.close(read)
