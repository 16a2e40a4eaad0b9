"""Drive's quota, measured where it lives: ``drive.csv`` in a run folder on Drive.

A replaced or deleted file on Drive goes to its Trash and counts against the quota for 30
days. colabkit empties a large file before it is replaced, so a run
should cost Drive only its own files. That rests on public reports, not on a measurement,
so each session of a Drive run records what the mount itself says (``statvfs``: used and
total bytes) beside the size of the run's own files, at its start, at every mirror and
at its stop. What the usage grew by beyond the run's own files is what went to the Trash
(or what something else on the same Drive wrote meanwhile). The mount's figures come from
Google's servers and lag the uploads (minutes, sometimes more): read a session's growth
as an estimate, and the last row of a stop as the best one.
"""
from __future__ import annotations

import csv
import os
from datetime import datetime, timezone
from pathlib import Path

FIELDS = ("time", "event", "epoch", "used_bytes", "total_bytes", "run_bytes")
WARN_BYTES = 1_000_000_000  # growth beyond the run's own files that earns a warning
INT_FIELDS = FIELDS[2:]


def usage(path: str | os.PathLike) -> tuple[int, int] | None:
    """(used, total) bytes of the file system holding ``path``, as its mount reports them
    (for Drive: the account's quota), or None when the mount does not answer."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize


def folder_bytes(path: str | os.PathLike) -> int:
    """The bytes of the files below ``path`` (what the run itself keeps on Drive)."""
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def record(log: Path, drive_folder: Path, event: str, epoch: int) -> dict | None:
    """Measure Drive at ``drive_folder`` and append a row to ``log`` (a local file, mirrored
    with the run's small files). None, and nothing written, when Drive does not answer."""
    measured = usage(drive_folder)
    if measured is None:
        return None
    row = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "event": event,
           "epoch": int(epoch), "used_bytes": measured[0], "total_bytes": measured[1],
           "run_bytes": folder_bytes(drive_folder)}
    new = not log.exists() or log.stat().st_size == 0
    with open(log, "a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
    return row


def read_log(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``drive.csv``; a row torn by a crash, or otherwise unreadable, is
    skipped. A missing file reads as no rows."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            raw = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    rows = []
    for r in raw:
        try:
            rows.append({**r, **{k: int(r[k]) for k in INT_FIELDS}})
        except (KeyError, TypeError, ValueError):
            continue
    return rows


def sessions(rows: list[dict]) -> list[list[dict]]:
    """The rows split at each ``start``: one list per training session."""
    out: list[list[dict]] = []
    for r in rows:
        if r["event"] == "start" or not out:
            out.append([])
        out[-1].append(r)
    return out


def session_growth(rows: list[dict]) -> dict:
    """From a session's first row to its last: how much Drive's usage grew, how much the
    run's own files grew, and the difference (``beyond``: Trash, or other writers)."""
    first, last = rows[0], rows[-1]
    used = last["used_bytes"] - first["used_bytes"]
    own = last["run_bytes"] - first["run_bytes"]
    return {"used": used, "own": own, "beyond": used - own}


def run_growth(rows: list[dict]) -> int | None:
    """Growth beyond the run's own files, summed over its sessions (what happened on
    Drive between sessions is not the run's); None without rows."""
    if not rows:
        return None
    return sum(session_growth(s)["beyond"] for s in sessions(rows))


def stop_report(rows: list[dict], warn_bytes: int | None = None) -> tuple[str, str | None]:
    """The line printed at a stop for the session that ends, and a warning when Drive grew
    by more than ``warn_bytes`` (default ``WARN_BYTES``, 1 GB) beyond the run's own files."""
    warn_bytes = WARN_BYTES if warn_bytes is None else warn_bytes
    if not rows:
        return "", None
    g = session_growth(sessions(rows)[-1])
    line = (f"Drive usage grew by {_gb(g['used'])} this session, the run's own files by "
            f"{_gb(g['own'])} ({_gb(rows[-1]['used_bytes'])} of {_gb(rows[-1]['total_bytes'])} "
            "used; the mount's figures lag uploads).")
    if g["beyond"] <= warn_bytes:
        return line, None
    return line, (f"Drive's usage grew by {_gb(g['beyond'])} more than this run's own files "
                  "this session. Replaced and deleted files go to Drive's Trash and count "
                  "against the quota for 30 days: empty it at drive.google.com → Trash → "
                  "Empty trash (or delete single files there for good), and look there for "
                  "what filled it. See drive.csv in the run folder for each measurement.")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


__all__ = ["usage", "folder_bytes", "record", "read_log", "sessions", "session_growth",
           "run_growth", "stop_report", "WARN_BYTES"]
