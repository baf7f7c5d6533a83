"""IMDB reviews: the ``aclImdb`` folder (``test/pos|neg/*.txt``) or a CSV/Parquet of (text, label).

Labels: 0 negative, 1 positive (as aclImdb's folders and the Hugging Face ``imdb`` set have them).
A table's label column may hold 0/1 or neg/pos/negative/positive.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from suite.datasets import DatasetError

EXPECTED = (
    "expected the aclImdb folder (aclImdb/test/pos/*.txt and aclImdb/test/neg/*.txt; the folder "
    "holding aclImdb/, aclImdb/ itself, or its test/ folder), or a .csv/.parquet file with a text "
    "column (text or review) and a label column (label or sentiment: 0/1, neg/pos)"
)
TEXT_COLUMNS = ("text", "review")
LABEL_COLUMNS = ("label", "sentiment")
LABELS = {"0": 0, "1": 1, "neg": 0, "pos": 1, "negative": 0, "positive": 1}

# A review is its text, or the Path of the .txt file that holds it (read when loaded).
Review = tuple[str | Path, int]


def find(path: str | Path) -> list[Review]:
    """Every (review, label) of the test set, in a stable order; DatasetError for other layouts."""
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return _from_csv(path)
        if suffix == ".parquet":
            return _from_parquet(path)
        raise DatasetError(f"imdb: {path} is neither .csv nor .parquet; {EXPECTED}")
    for root in (path / "aclImdb" / "test", path / "test", path):
        if (root / "pos").is_dir() and (root / "neg").is_dir():
            items: list[Review] = []
            for label, name in ((0, "neg"), (1, "pos")):
                items += [(f, label) for f in sorted((root / name).glob("*.txt"))]
            if not items:
                raise DatasetError(f"imdb: {root}/pos and {root}/neg hold no .txt reviews; {EXPECTED}")
            return items
    raise DatasetError(f"imdb: {path} has no test/pos and test/neg folders; {EXPECTED}")


def _rows(path: Path, columns: list[str], rows: list[tuple[object, object]] | None) -> list[Review]:
    text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
    label_col = next((c for c in LABEL_COLUMNS if c in columns), None)
    if text_col is None or label_col is None:
        raise DatasetError(f"imdb: {path} has columns {columns}; {EXPECTED}")
    assert rows is not None
    items: list[Review] = []
    for number, (text, label) in enumerate(rows, 2):
        value = LABELS.get(str(label).strip().lower())
        if value is None:
            raise DatasetError(f"imdb: {path} row {number} has label {label!r}; {EXPECTED}")
        items.append((str(text), value))
    if not items:
        raise DatasetError(f"imdb: {path} has no rows; {EXPECTED}")
    return items


def _from_csv(path: Path) -> list[Review]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # reviews can be long
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        text_col = next((c for c in TEXT_COLUMNS if c in columns), "")
        label_col = next((c for c in LABEL_COLUMNS if c in columns), "")
        rows = [(r.get(text_col), r.get(label_col)) for r in reader] if text_col and label_col else None
    return _rows(path, columns, rows)


def _from_parquet(path: Path) -> list[Review]:
    try:
        import pyarrow.parquet as pq

        def read() -> dict[str, list[object]]:
            return dict(pq.read_table(path).to_pydict())
    except ImportError:
        try:
            import polars as pl
        except ImportError:
            raise DatasetError(f"imdb: reading {path} needs pyarrow or polars; install one, or give a CSV") from None

        def read() -> dict[str, list[object]]:
            return dict(pl.read_parquet(path).to_dict(as_series=False))

    try:
        table = read()
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise DatasetError(f"imdb: cannot read {path} as Parquet: {exc}") from None
    table = {str(k).lower(): v for k, v in table.items()}
    columns = list(table)
    text_col = next((c for c in TEXT_COLUMNS if c in columns), "")
    label_col = next((c for c in LABEL_COLUMNS if c in columns), "")
    rows = list(zip(table[text_col], table[label_col], strict=True)) if text_col and label_col else None
    return _rows(path, columns, rows)


def texts(items: list[Review]) -> list[str]:
    """The reviews' texts (reading the aclImdb files)."""
    out = []
    for source, _ in items:
        if isinstance(source, Path):
            try:
                out.append(source.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise DatasetError(f"imdb: cannot read review {source}: {exc}") from None
        else:
            out.append(source)
    return out
