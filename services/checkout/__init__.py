"""Checkout: HTTP entry points on the event-sourced Order aggregate (DESIGN §5, §7, issue 4)."""
