"""Parameter and body types the routes share: bounds the store can hold, strict JSON bodies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict

# SQLite's INTEGER is a signed 64-bit number: a larger id or offset cannot even be asked for (the driver
# raises OverflowError), so it is refused as an invalid request that names the parameter.
MAX_SQLITE_INT = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_SQLITE_INT, description="a row id, 1 to 2^63 - 1")]


def _no_nul(text: str | None) -> str | None:
    # SQLite stores a NUL, LIKE then treats the pattern as ending there (q=%00 matched every row), and C
    # code reading the text later stops at it: no text field of ours has a use for one
    if text is not None and "\x00" in text:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return text


Text = Annotated[str, AfterValidator(_no_nul)]
# Query inside Annotated: given as the default value instead, FastAPI drops the AfterValidator
SearchText = Annotated[str | None, Query(max_length=200), AfterValidator(_no_nul)]


class StrictBody(BaseModel):
    """A JSON body taken as typed: no "yes" or 1 for true, no "5" for 5, no NaN or infinity."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)
