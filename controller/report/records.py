"""Reading a campaign folder's run records for the report and for ``compare``.

Files that are not run records (a JSON list, an object without ``run_id``, text that is not JSON)
are skipped and named, so that one stray file does not stop a report; a run record of another
schema version is refused, as the store refuses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import UserError
from controller.store import RecordError, load_record


@dataclass
class Folder:
    path: Path
    records: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def skipped_warning(self) -> str | None:
        """One line naming every skipped file and why, or None."""
        if not self.skipped:
            return None
        shown = ", ".join(f"{p.name} ({why})" for p, why in self.skipped[:10])
        more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
        n = len(self.skipped)
        files, what = ("files", "are not run records") if n != 1 else ("file", "is not a run record")
        return f"skipped {n} {files} of {self.path} that {what}: {shown}{more}"


def _cut_short(exc: json.JSONDecodeError) -> bool:
    """A record whose JSON was valid up to where it stops (a write cut short), not one malformed inside."""
    doc = exc.doc.rstrip()
    if not doc.lstrip().startswith("{") or doc.endswith("}"):
        return False
    return exc.pos >= len(doc) or exc.msg.startswith("Unterminated string")


def _not_a_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the parsed object, None) for what looks like a run record, else (None, why it is not one)."""
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        if _cut_short(exc):
            return None, f"truncated: its JSON stops mid-record after {len(exc.doc)} bytes, a write cut short"
        return None, f"not JSON: {exc.msg} at line {exc.lineno}"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    if not data.get("run_id") or not isinstance(data.get("run_id"), str):
        return None, "no run_id"
    return data, None


def read_folder(folder: Path | str) -> Folder:
    """Every run record of ``folder`` (not recursive), in file-name (run-id) order."""
    path = Path(folder)
    if not path.exists():
        raise UserError(f"{path} does not exist; give the folder of a campaign's records, e.g. results/ci-smoke")
    if not path.is_dir():
        raise UserError(f"{path} is not a folder; give the folder of a campaign's records, e.g. results/ci-smoke")
    out = Folder(path)
    for p in sorted(path.glob("*.json")):
        _, why = _not_a_record(p)
        if why is not None:
            out.skipped.append((p, why))
            continue
        try:
            out.records.append((p, load_record(p)))
        except RecordError as exc:
            raise UserError(str(exc)) from None
    if not out.records:
        if out.skipped:
            raise UserError(
                f"{path} holds no run records that can be read: {out.skipped_warning()}; run a campaign into it, or "
                "repair or remove those files"
            )
        raise UserError(f"{path} holds no run records (*.json); run a campaign into it first")
    return out
