"""Tables with categorical columns as numbers and back: what shap's maskers and LIME perturb."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["Codec"]


class Codec:
    """Categories of `frame`'s non-numeric columns (seen in `frame` or `background`) as integer codes."""

    def __init__(self, frame: pd.DataFrame, background: pd.DataFrame) -> None:
        self.columns = list(frame.columns)
        self.dtypes = frame.dtypes
        self.codes = {
            c: pd.Index(pd.concat([background[c], frame[c]]).astype(str).unique())
            for c in self.columns
            if not pd.api.types.is_numeric_dtype(frame[c])
        }

    @property
    def categorical(self) -> list[int]:
        return [self.columns.index(c) for c in self.codes]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = frame.copy()
        for c, cats in self.codes.items():
            out[c] = cats.get_indexer(frame[c].astype(str))
        return out.to_numpy(dtype=np.float64)

    def decode(self, Z: np.ndarray) -> pd.DataFrame:
        """Codes back to categories (perturbed codes rounded and clipped), integers back to integers."""
        frame = pd.DataFrame(Z, columns=self.columns)
        for c, cats in self.codes.items():
            frame[c] = np.asarray(cats)[np.clip(Z[:, self.columns.index(c)].round().astype(int), 0, len(cats) - 1)]
        for c in self.columns:
            if c not in self.codes and pd.api.types.is_integer_dtype(self.dtypes[c]):
                frame[c] = frame[c].round().astype(self.dtypes[c])
        return frame
