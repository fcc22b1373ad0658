"""One order through the containerised stack: placed over HTTP, `confirmed` within a deadline.

`containers.sh smoke` runs it with the stack's AUTH_JWT_SECRET in the environment; the token is
minted with it exactly as an identity provider would sign one. Exit status 0 only when checkout
answers `confirmed`; anything else prints the order's last view and fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import httpx
from pydantic import SecretStr

from shared.auth import AuthSettings, mint_token

TERMINAL = {"confirmed", "rejected", "cancelled"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkout", required=True, help="checkout's base URL")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to `confirmed`")
    args = parser.parse_args()

    settings = AuthSettings(jwt_secret=SecretStr(os.environ["AUTH_JWT_SECRET"]))
    token = mint_token(settings, "containers-smoke")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=args.checkout, headers=headers, timeout=10) as http:
        placed = http.post(
            "/orders",
            json={"lines": [{"sku": "TEA-001", "quantity": 1}]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if placed.status_code != 201:
            print(f"[smoke] POST /orders: {placed.status_code} {placed.text}", file=sys.stderr)
            return 1
        order_id = placed.json()["order_id"]
        print(f"[smoke] order {order_id} placed", file=sys.stderr)
        deadline = time.monotonic() + args.timeout
        view = placed.json()
        while time.monotonic() < deadline:
            view = http.get(f"/orders/{order_id}").json()
            if view["status"] in TERMINAL:
                break
            time.sleep(0.5)
    if view["status"] != "confirmed":
        print(f"[smoke] order {order_id} is not confirmed: {view}", file=sys.stderr)
        return 1
    print(f"[smoke] order {order_id} confirmed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
