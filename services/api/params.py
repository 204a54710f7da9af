"""Parameter and body types the routes share: bounds the store can hold, strict JSON bodies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict

# SQLite's INTEGER is a signed 64-bit number: a larger id or offset cannot even be asked for (the driver
# raises OverflowError), so it is refused as an invalid request that names the parameter.
MAX_SQLITE_INT = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_SQLITE_INT, description="a row id, 1 to 2^63 - 1")]


class StrictBody(BaseModel):
    """A JSON body taken as typed: no "yes" or 1 for true, no "5" for 5, no NaN or infinity."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)
