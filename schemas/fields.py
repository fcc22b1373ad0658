"""Field types shared by the contracts (bounded, so a bad producer cannot send a novel)."""

from typing import Annotated

from pydantic import Field

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
Sku = Annotated[
    str, Field(pattern=r"^[A-Z0-9]{3,12}(-[A-Z0-9]{1,12}){0,3}$", description="e.g. TEA-001")
]
Quantity = Annotated[int, Field(ge=1, le=1000)]
Cents = Annotated[int, Field(ge=0, le=10**12, description="amount in minor units")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Reason = Annotated[str, Field(min_length=1, max_length=500)]
