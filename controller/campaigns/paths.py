"""What a campaign file names on disk: a path read from the file's folder, else from the current
directory; a model as the matrix holds it (a file or folder resolved, a name or hub id as is)."""

from __future__ import annotations

from pathlib import Path

from controller.errors import UserError
from controller.inputs import BadValue, path_text


def local_path(text: str, base: Path) -> Path:
    """A path from a campaign file: absolute as is; relative from the file's folder, else from the
    current directory; when neither exists, the file-relative one (for the error message)."""
    try:
        path_text(text)
    except BadValue as exc:
        raise UserError(f"a path in the campaign file in {base}: {exc}") from None
    p = Path(text).expanduser()
    if p.is_absolute():
        return p
    beside = (base / p).resolve()
    if beside.exists() or not p.exists():
        return beside
    return p.resolve()


def model_paths(models: list[str], path: Path) -> list[str]:
    """Model files and folders resolved (a relative one from the campaign file's folder); names and hub
    ids as is."""
    out = []
    for m in models:
        p = local_path(m, path.parent)
        looks_like_path = m.startswith((".", "/", "~")) or p.exists()
        if looks_like_path and not p.exists():
            beside = f" (read beside {path.name}, else in the current folder)"
            where = "" if Path(m).expanduser().is_absolute() else beside
            raise UserError(
                f"{path}: [matrix] models names {m}, which does not exist{where}; name your model: "
                f"--set 'matrix.models=[\"PATH\"]'"
            )
        out.append(str(p) if looks_like_path else m)
    return out


def model_in_matrix(model: str, models: list[str], where: str, path: Path) -> str:
    """A table named by a model (as written in the file): the model as the matrix holds it, or UserError."""
    p = local_path(model, path.parent)
    # As model_paths names it, but a path that is missing is not in the matrix either: say that, not [matrix]'s error.
    key = str(p) if model.startswith((".", "/", "~")) or p.exists() else model
    if key not in models:
        raise UserError(f"{path}: {where} names {model}, which is not in [matrix] models ({', '.join(models)})")
    return key
