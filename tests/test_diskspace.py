"""Free space and serve's floor (metrics_ops.diskspace), on a real tmpfs and with a stepped clock."""

import os

from metrics_ops.diskspace import MIB, DiskUsage, SpaceFloor, disk_usage

from .helpers import fill


def test_disk_usage_is_what_the_kernel_says_on_a_real_tmpfs(small_tmpfs):
    mnt = small_tmpfs("8m")
    before = disk_usage(mnt)
    assert before.total == 8 * MIB and before.free > 7 * MIB
    (mnt / "two-mib").write_bytes(b"x" * (2 * MIB))
    after = disk_usage(mnt)
    assert before.free - after.free == 2 * MIB
    assert 60 < after.free_percent < 80


def test_the_floor_says_why_when_the_disk_is_under_it_and_clears_when_space_returns(small_tmpfs):
    mnt = small_tmpfs("8m")
    t = [0.0]
    floor = SpaceFloor(mnt, 2 * MIB, clock=lambda: t[0])
    assert floor.reason() is None
    filler = fill(mnt)
    assert floor.reason() is None  # read 0 s ago: at most one statvfs per 250 ms
    t[0] += 0.25
    reason = floor.reason()
    assert reason is not None and "under serve's floor of 2.0 MiB (METRICS_SERVE_MIN_FREE_MB)" in reason
    assert "free space on the data directory's file system is 0 bytes" in reason
    os.truncate(filler, 0)
    t[0] += 0.1
    assert floor.reason() is not None  # still the cached reading
    t[0] += 0.15
    assert floor.reason() is None


def test_the_floor_asks_the_kernel_at_most_once_per_interval():
    calls = []
    t = [100.0]

    def usage(path):
        calls.append(t[0])
        return DiskUsage(free=MIB, total=10 * MIB)

    floor = SpaceFloor("/unused", 2 * MIB, clock=lambda: t[0], usage=usage)
    for _ in range(1000):
        assert floor.reason() is not None
        t[0] += 0.001
    assert len(calls) == 4  # at 100.0, 100.25, 100.5, 100.75


def test_a_floor_of_zero_is_off_and_a_vanished_directory_is_not_the_floors_business(tmp_path):
    assert SpaceFloor(tmp_path, 0, usage=lambda p: DiskUsage(0, 1)).reason() is None
    assert SpaceFloor(tmp_path / "gone", MIB).reason() is None
