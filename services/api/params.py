"""Path and query parameter types the routes share: bounds that the store can hold."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

# SQLite's INTEGER is a signed 64-bit number: a larger id or offset cannot even be asked for (the driver
# raises OverflowError), so it is refused as an invalid request that names the parameter.
MAX_SQLITE_INT = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_SQLITE_INT, description="a row id, 1 to 2^63 - 1")]
