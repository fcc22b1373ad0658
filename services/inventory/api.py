"""Stock levels over HTTP: committed levels, read without locks."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Sku
from services.inventory.store import stock_levels


class StockLevel(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"sku": "TEA-001", "on_hand": 100, "reserved": 3, "available": 97}]
        }
    )

    sku: str
    on_hand: int = Field(description="units in the warehouse")
    reserved: int = Field(description="units held for orders not yet shipped")
    available: int = Field(description="on_hand - reserved: what new orders can reserve")


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(_pool)]
router = APIRouter(tags=["stock"])


@router.get("/stock", summary="Every SKU's stock level")
async def all_levels(pool: Pool) -> list[StockLevel]:
    """Stock levels of every known SKU, in SKU order."""
    return [
        StockLevel(sku=lv.sku, on_hand=lv.on_hand, reserved=lv.reserved, available=lv.available)
        for lv in await stock_levels(pool)
    ]


@router.get(
    "/stock/{sku}",
    summary="One SKU's stock level",
    responses={404: {"description": "the SKU is not known"}},
)
async def one_level(sku: Sku, pool: Pool) -> StockLevel:
    """On hand, reserved and available units of one SKU."""
    found = await stock_levels(pool, sku)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown SKU {sku!r}")
    lv = found[0]
    return StockLevel(sku=lv.sku, on_hand=lv.on_hand, reserved=lv.reserved, available=lv.available)
