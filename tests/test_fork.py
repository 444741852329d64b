"""A forked process never uses what its parent opened: serve's writer and shared ring remember the process id
(without a system call per event since 2026-12-04) and a child of os.fork opens its own file descriptor and
claims its own ring region. granian forks its workers through multiprocessing, which goes through os.fork."""

import os
import time
from zoneinfo import ZoneInfo

from metrics_ops.serve.counters import INDEX
from metrics_ops.serve.shared import SharedState
from metrics_ops.writer import Writer


def test_a_forked_child_opens_its_own_file_and_claims_its_own_ring_region(tmp_path):
    state = SharedState(tmp_path / "state", capacity=8)
    writer = Writer(tmp_path, ZoneInfo("UTC"), max_bytes=None, file_mode=0o640, on_new_file=lambda name: None)
    now = time.time()
    name = writer.append(b'{"n":1}\n', now)
    state.record_event(b'{"n":1}', True, INDEX["stored"])
    parent_region = state._region
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only (no pytest machinery after fork)
        code = 3
        try:
            writer.append(b'{"n":2}\n', now)
            state.record_event(b'{"n":2}', True, INDEX["stored"])
            code = 0 if (writer._fd_pid, state._pid) == (os.getpid(), os.getpid()) else 1
            code = code or (0 if state._region != parent_region else 2)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # 1: the parent's file or ring kept; 2: its region; 3: an error
    # and the parent goes on with its own, both events in the file and the ring
    writer.append(b'{"n":3}\n', now)
    state.record_event(b'{"n":3}', True, INDEX["stored"])
    assert (writer._fd_pid, state._pid, state._region) == (os.getpid(), os.getpid(), parent_region)
    assert sorted((tmp_path / name).read_bytes().splitlines()) == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    entries, counters = state.snapshot()
    assert sorted(data for data, _stored in entries) == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    assert counters["stored"] == 3
