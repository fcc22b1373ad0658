"""Receipts: one numbered receipt per confirmed order, rendered and delivered (issue 5)."""
