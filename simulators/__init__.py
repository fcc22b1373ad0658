"""Simulators of upstream systems we do not own (DESIGN §1), for local runs and tests only.

Not business code: they play the foreign side of a contract. They import only `shared` and
`schemas`, and nothing in `services` imports them (tests/unit/test_architecture.py checks both).
"""
