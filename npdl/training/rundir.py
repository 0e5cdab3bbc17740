"""Run folders (``npdl train --out DIR``): one run at a time, never overwritten by accident, traced.

:class:`RunFolder` wraps a run (``with RunFolder(out, ...) as folder:``) and, before any
training:

* makes the folder (never for ``resume``: a folder to continue must exist) and refuses a
  path that is a file;
* takes the lock ``run.lock`` (:class:`RunLock`), which names the holder's host, pid and
  command; a second run into the folder is refused with that name. The lock is an OS lock
  (``flock``) on the file, so a run killed without cleaning up (SIGKILL, power cut) holds
  nothing: the next run takes the file over with a notice. Creating it is also the check
  that the folder is writable;
* refuses a folder that already holds a run (any of :data:`OUTPUTS`) unless ``resume``
  (continue it from ``checkpoint.npz``) or ``overwrite`` (delete those files, and only
  those, first);
* writes the manifest ``run.json``: the command, the settings and seed, npdl's version and
  commit, and what :func:`npdl.environment.collect` reports (NumPy, Numba, CuPy, BLAS and
  threads, CPU and GPU models), with ``status: "running"`` and ``ended: null``.

On the way out it completes the manifest (``status``: ``finished``, ``diverged``,
``interrupted`` or ``failed``, end time, result or error), turns a failed write into one
:class:`~npdl.training.errors.FileWriteError` that names the file and the last good
checkpoint (which atomic writes keep), and releases the lock.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import shutil
import socket
import sys
import time
from datetime import datetime, timezone

from .checkpoint import checkpoint_epoch, write_text
from .errors import FileWriteError, RunFolderBusyError, RunFolderError, TrainingDivergedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the lock file alone, with a pid check
    fcntl = None

LOCK, MANIFEST = "run.lock", "run.json"
CHECKPOINT, BEST, HISTORY, MODEL, CURVES = "checkpoint.npz", "best.npz", "history.csv", "model.npz", "curves.png"

#: the files npdl writes into a run folder (shell patterns; ``NAME/`` for a folder of them): what
#: marks a folder as holding a run, and all that ``overwrite`` deletes. Code that writes another
#: file there registers it with :func:`register_outputs`.
OUTPUTS = [MANIFEST, CHECKPOINT, BEST, HISTORY, MODEL, CURVES, "pretrain_*.npz", "reconstructions.png",
           "codes.png", "filters_layer0.png", "filters_corruption_*.png", "max_activation.png", "pretraining.png",
           "accuracy.png", "predictions.png", "cost.png"]

#: errors of writing that name no file of the folder but can only come from a write
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


def register_outputs(*patterns: str) -> None:
    """Add file names (shell patterns) that npdl writes into run folders to :data:`OUTPUTS`."""
    OUTPUTS.extend(p for p in patterns if p not in OUTPUTS)


def _is_output(name: str, folder=False) -> bool:
    return any(fnmatch.fnmatchcase(name + "/" if folder else name, p) for p in OUTPUTS)


def _outputs_in(folder) -> list[str]:
    """Names in ``folder`` that npdl writes: files of :data:`OUTPUTS` and folders of its ``NAME/``."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            found += [name] if _is_output(name, folder=True) else []
        elif os.path.isfile(path) and _is_output(name):
            found.append(name)
    return sorted(found)


def _is_temporary(name: str) -> bool:
    """``.NAME.XXXX.tmp`` (:func:`~npdl.training.checkpoint.atomic_write`) or ``NAME.tmp`` of an output."""
    if name.startswith(".") and name.endswith(".tmp"):
        return _is_output(name[1:].rsplit(".", 2)[0])
    return name.endswith(".tmp") and _is_output(name[:-4])


def run_files(folder) -> list[str]:
    """The files (and folders) of :data:`OUTPUTS` in ``folder``, names sorted: those of a run."""
    return _outputs_in(folder)


def remove_run_files(folder) -> list[str]:
    """Delete what npdl writes (:data:`OUTPUTS` and the temporary files of its writes), nothing
    else; returns the names."""
    gone = _outputs_in(folder) + sorted(n for n in os.listdir(folder) if _is_temporary(n)
                                        and os.path.isfile(os.path.join(folder, n)))
    for name in gone:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return gone


def checkpoint_note(folder) -> str:
    """Where a stopped run can go on from: ``the last good checkpoint, D/checkpoint.npz (epoch 3),
    is kept`` or ``no checkpoint was written yet``."""
    path = os.path.join(folder, CHECKPOINT)
    epoch = checkpoint_epoch(path) if os.path.isfile(path) else None
    if epoch is None:
        return f"no checkpoint was written yet (in {folder})"
    return f"the last good checkpoint, {path} (epoch {epoch}), is kept"


def process_command() -> str:
    """This process's command line, as a shell would take it (``python -m npdl ...`` for ``-m``)."""
    import shlex

    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("npdl", "__main__.py")):
        argv = [os.path.basename(sys.executable), "-m", "npdl", *argv[1:]]
    return shlex.join(argv)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _describe(holder: dict) -> str:
    if not holder:
        return "another npdl run (its lock file is being written)"
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command')!r}")


def _alive(pid) -> bool:
    """Whether process ``pid`` exists on this host (assumed so where that cannot be asked)."""
    if os.name != "posix":  # pragma: no cover
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


class RunLock:
    """``run.lock`` in ``folder``, held from :meth:`acquire` to :meth:`release` (or the
    process's end: the OS lock goes with the process; the file then says who left it).

    The file is JSON: ``host``, ``pid``, ``command``, ``started``. Refused
    (:class:`~npdl.training.errors.RunFolderBusyError`) while another process holds it, or
    when a file left behind names another host, whose processes cannot be checked from here.
    ``notice(text)`` is told when a stale lock is taken over (default: printed to stderr).
    """

    def __init__(self, folder, command=None, notice=None):
        self.folder, self.path = os.fspath(folder), os.path.join(os.fspath(folder), LOCK)
        self.command = process_command() if command is None else command
        self.notice = notice or (lambda text: print(f"npdl: {text}", file=sys.stderr))
        self._fd = None

    def _read(self, fd) -> dict:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 1 << 16).decode("utf-8", "replace")
        try:
            holder = json.loads(text) if text.strip() else {}
        except ValueError:
            holder = {"command": text.strip()[:200]}
        return holder if isinstance(holder, dict) else {}

    def _busy(self, holder, why="") -> RunFolderBusyError:
        return RunFolderBusyError(f"{self.folder} is in use by another run ({_describe(holder)}){why}; wait for it to "
                                  "end or choose another --out", holder)

    def acquire(self) -> "RunLock":
        me = {"host": socket.gethostname(), "pid": os.getpid(), "command": self.command, "started": _now()}
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise RunFolderError(f"cannot write in {self.folder} ({exc.strerror or exc}); make it writable or "
                                     "choose another --out") from exc
            locked = True
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = self._read(fd)
                    os.close(fd)
                    raise self._busy(holder) from None
                except OSError:  # a filesystem without locks: the pid check below decides
                    locked = False
            try:  # the holder we waited for may have removed the file we opened: then start again
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = self._read(fd)
            if previous and previous.get("pid") != me["pid"]:
                if previous.get("host") != me["host"]:
                    os.close(fd)
                    raise self._busy(previous, f"; if that run has ended, delete {self.path}")
                if not locked and _alive(previous.get("pid")):
                    os.close(fd)
                    raise self._busy(previous)
                self.notice(f"taking over {self.path}: the run that left it ({_describe(previous)}) is no longer "
                            "running")
            try:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, json.dumps(me).encode("utf-8"))
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                raise RunFolderError(f"cannot write in {self.folder} ({exc.strerror or exc}); free some space or "
                                     "choose another --out") from exc
            self._fd, self.holder = fd, me
            return self

    def release(self) -> None:
        """Remove the lock file (while still holding it) and let go."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                os.remove(self.path)
        except OSError:
            pass
        os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


class RunFolder:
    """The folder of one run, from its start to its end (see the module docstring).

    ``settings`` (JSON-able: recipe, epochs, seed, ...) go into the manifest as they are;
    set :attr:`result` (a JSON-able dict) before the ``with`` block ends to record it.
    """

    def __init__(self, path, settings=None, resume=False, overwrite=False, command=None, notice=None):
        self.path = os.fspath(path)
        self.settings, self.resume, self.overwrite = dict(settings or {}), resume, overwrite
        self.command = process_command() if command is None else command
        self.lock = RunLock(self.path, self.command, notice)
        self.manifest, self.result, self._started = None, None, None

    # --------------------------------------------------------------------- start
    def __enter__(self) -> "RunFolder":
        if self.resume and self.overwrite:
            raise RunFolderError("--resume continues the run in the folder, --overwrite deletes it: give one")
        checkpoint = os.path.join(self.path, CHECKPOINT)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunFolderError(f"{self.path} is a file, not a folder; give --out a folder (it is made if missing)")
        if self.resume and not os.path.isdir(self.path):
            raise RunFolderError(f"--resume: no checkpoint at {checkpoint} (there is no folder {self.path}); start "
                                 "without --resume, or point --out at the folder of the run to continue")
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"cannot make the folder {self.path} ({exc.strerror or exc}); choose another "
                                 "--out") from exc
        self.lock.acquire()
        try:
            self._check_contents(checkpoint)
            previous = self._previous_manifest() if self.resume else []
            self._started = time.time()
            self.manifest = _manifest(self.command, self.settings, previous)
            try:
                write_text(os.path.join(self.path, MANIFEST), json.dumps(self.manifest, indent=2) + "\n")
            except FileWriteError as exc:
                raise RunFolderError(f"cannot write in {self.path} ({exc.reason}); free some space, make it "
                                     "writable or choose another --out") from exc
        except BaseException:
            self.lock.release()
            raise
        return self

    def _check_contents(self, checkpoint):
        if self.resume:  # what to resume from is the recipe's to check (sda also resumes from pretrain_<k>.npz)
            if not run_files(self.path):
                raise RunFolderError(f"--resume: no checkpoint at {checkpoint} ({self.path} holds no run); start "
                                     "without --resume, or point --out at the folder of the run to continue")
            return
        files = run_files(self.path)
        if not files:
            return
        if self.overwrite:
            remove_run_files(self.path)
            return
        how = ("continue it with --resume or replace it with --overwrite" if CHECKPOINT in files else
               "it has no checkpoint to continue from: replace it with --overwrite")
        raise RunFolderError(f"{self.path} already holds a run ({', '.join(files)}); {how} (which deletes only "
                             "the files npdl writes), or choose another --out")

    def _previous_manifest(self) -> list:
        try:
            with open(os.path.join(self.path, MANIFEST), encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            return []
        if not isinstance(old, dict):
            return []
        return list(old.pop("previous", None) or []) + [old]

    # --------------------------------------------------------------------- end
    def __exit__(self, exc_type, exc, tb):
        try:
            status = ("finished" if exc is None else "diverged" if isinstance(exc, TrainingDivergedError)
                      else "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            failure = self._write_failure(exc) if exc is not None else None
            self.manifest.update(status=status, ended=_now(), seconds=round(time.time() - self._started, 3),
                                 result=self.result, error=None if exc is None else str(failure or exc))
            numba_info = (self.manifest.get("environment") or {}).get("numba") or {}
            if numba_info.get("available") and numba_info.get("threading_layer") is None:
                numba_info["threading_layer"] = _threading_layer()
            try:
                write_text(os.path.join(self.path, MANIFEST), json.dumps(self.manifest, indent=2) + "\n")
            except FileWriteError as exc_manifest:
                if exc is None:  # the run's own record is part of the run
                    raise self._write_failure(exc_manifest) from exc_manifest
            if failure is not None:
                raise failure from exc
        finally:
            self.lock.release()
        return False

    def _write_failure(self, exc) -> FileWriteError | None:
        """``exc`` as one error naming the file and the last good checkpoint, when it is a failed write
        into this folder (a full disk anywhere, no permission for a file here); else None."""
        if not isinstance(exc, OSError):
            return None
        filename = exc.filename if isinstance(exc.filename, str) else None
        inside = filename is not None and os.path.abspath(filename).startswith(os.path.abspath(self.path) + os.sep)
        if not (isinstance(exc, FileWriteError) or exc.errno in _WRITE_ERRNOS
                or (exc.errno in _ACCESS_ERRNOS and inside)):
            return None
        reason = exc.reason if isinstance(exc, FileWriteError) else (exc.strerror or str(exc))
        what = f"cannot write {filename}" if filename else f"writing into {self.path} failed"
        return FileWriteError(f"{what}: {reason}; {checkpoint_note(self.path)}: free some space or fix the folder, "
                              "then continue with --resume (or start again with --overwrite)", exc.errno, filename,
                              reason)


def _threading_layer():
    try:
        import numba

        return numba.threading_layer()
    except (ImportError, ValueError):
        return None


def _manifest(command, settings, previous) -> dict:
    from .. import __version__
    from ..environment import collect

    try:
        environment = collect(probe=False)
    except Exception as exc:  # a broken optional library must not stop the run; the manifest says so
        environment = {"error": f"{type(exc).__name__}: {exc}"}
    return {"format": "npdl-run", "format_version": 1, "status": "running", "command": command,
            "settings": settings, "seed": settings.get("seed"),
            "npdl": {"version": __version__, **(environment.get("source") or {})},
            "host": socket.gethostname(), "pid": os.getpid(), "started": _now(), "ended": None, "seconds": None,
            "environment": environment, "result": None, "error": None, "previous": previous}
