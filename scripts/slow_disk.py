#!/usr/bin/python3
"""A slow disk for the benchmark's cold-disk rows (issue 20 part 3): a FUSE filesystem that serves the files of
a folder and waits in every read as an SD card or a spinning disk would, one read at a time.

    /usr/bin/python3 scripts/slow_disk.py BACKING MOUNTPOINT [--mb-per-s 20] [--latency-ms 1]

Each read waits latency + size / rate while holding the one lock of the disk (a card or a disk serves one
request at a time), then reads the backing file. The kernel's page cache is still used (no direct_io, and
kernel_cache keeps the pages across opens): mincore(2) sees what is in memory, and
`echo 1 > /proc/sys/vm/drop_caches` makes the files cold again, so that their bytes come through the slow
reads. Writes, metadata and folders pass straight through without waiting.

Runs in the foreground until unmounted (`umount MOUNTPOINT`) or killed. Needs /dev/fuse, libfuse2 and fusepy
(Debian: `apt-get install -y --no-install-recommends python3-fusepy`, which brings libfuse2).
"""

import argparse
import errno
import os
import threading
import time

try:
    from fusepy import FUSE, FuseOSError, Operations  # Debian's python3-fusepy
except ImportError:  # pip's fusepy
    from fuse import FUSE, FuseOSError, Operations


class SlowDisk(Operations):
    """Passes every call to the folder `root`; read() waits first, one read at a time."""

    use_ns = True

    def __init__(self, root, bytes_per_s, latency_s):
        self.root = os.path.realpath(root)
        self.bytes_per_s = bytes_per_s
        self.latency_s = latency_s
        self.disk = threading.Lock()
        self.reads = 0
        self.read_bytes = 0

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except OSError as error:
            raise FuseOSError(error.errno or errno.EIO)

    # The slow part.
    def read(self, path, size, offset, fh):
        with self.disk:
            time.sleep(self.latency_s + size / self.bytes_per_s)
            self.reads += 1
            self.read_bytes += size
            return self._call(os.pread, fh, size, offset)

    # Everything else passes through.
    def getattr(self, path, fh=None):
        st = self._call(os.fstat, fh) if fh is not None else self._call(os.lstat, self._full(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns",
                "st_ctime_ns", "st_ino", "st_blocks")
        attrs = {key: getattr(st, key) for key in keys}
        for key in ("st_atime", "st_mtime", "st_ctime"):
            attrs[key] = attrs.pop(key + "_ns")
        return attrs

    def access(self, path, mode):
        if not os.access(self._full(path), mode):
            raise FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        return [".", ".."] + self._call(os.listdir, self._full(path))

    def readlink(self, path):
        return self._call(os.readlink, self._full(path))

    def statfs(self, path):
        st = self._call(os.statvfs, self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                "f_frsize", "f_namemax")
        return {key: getattr(st, key) for key in keys}

    def open(self, path, flags):
        return self._call(os.open, self._full(path), flags)

    def create(self, path, mode, fi=None):
        return self._call(os.open, self._full(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def write(self, path, data, offset, fh):
        return self._call(os.pwrite, fh, data, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            self._call(os.ftruncate, fh, length)
        else:
            self._call(os.truncate, self._full(path), length)

    def flush(self, path, fh):
        # Every close(2) of a descriptor (a dup too) asks this and waits for the answer, behind the reads queued
        # here: a disk has no such round trip. ENOSYS once, and the kernel stops asking.
        raise FuseOSError(errno.ENOSYS)

    def fsync(self, path, datasync, fh):
        return self._call(os.fdatasync if datasync else os.fsync, fh)

    def release(self, path, fh):
        return self._call(os.close, fh)

    def chmod(self, path, mode):
        return self._call(os.chmod, self._full(path), mode)

    def chown(self, path, uid, gid):
        return self._call(os.chown, self._full(path), uid, gid)

    def utimens(self, path, times=None):
        if times is None:
            return self._call(os.utime, self._full(path))
        return self._call(lambda full: os.utime(full, ns=times), self._full(path))

    def mkdir(self, path, mode):
        return self._call(os.mkdir, self._full(path), mode)

    def rmdir(self, path):
        return self._call(os.rmdir, self._full(path))

    def unlink(self, path):
        return self._call(os.unlink, self._full(path))

    def rename(self, old, new):
        return self._call(os.rename, self._full(old), self._full(new))

    def link(self, target, name):
        return self._call(os.link, self._full(name), self._full(target))

    def symlink(self, name, target):
        return self._call(os.symlink, target, self._full(name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backing", help="the folder whose files are served")
    parser.add_argument("mountpoint")
    parser.add_argument("--mb-per-s", type=float, default=20.0, help="read rate, MB/s (default 20)")
    parser.add_argument("--latency-ms", type=float, default=1.0, help="wait before each read, ms (default 1)")
    args = parser.parse_args()
    disk = SlowDisk(args.backing, args.mb_per_s * 1e6, args.latency_ms / 1e3)
    FUSE(disk, args.mountpoint, foreground=True, nothreads=False, kernel_cache=True, fsname="slow_disk")


if __name__ == "__main__":
    main()
