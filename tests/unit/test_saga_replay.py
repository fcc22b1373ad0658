"""The replay check finds every recorded saga the current code would not repeat."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from schemas.checkout.v1 import OrderConfirmed
from schemas.payments.v1 import PaymentDeclined
from services.orchestrator.replay import check, replay
from services.orchestrator.saga import Saga, Status, Timeouts
from tests.unit.test_project_interface import ROOT
from tests.unit.test_saga import ORDER, Run, authorized, placed, receipt, released, reserved


def completed() -> Saga:
    run = Run()
    for message in (placed(), reserved(), authorized(), OrderConfirmed(order_id=ORDER), receipt()):
        run(message)
    return run.s


def rejected_after_decline() -> Saga:
    run = Run()
    for message in (placed(), reserved(), PaymentDeclined(order_id=ORDER, reason="no"), released()):
        run(message)
    run.deadline()  # a re-send of the RejectOrder still unanswered
    return run.s


def test_histories_recorded_by_this_code_replay_alike() -> None:
    checked, found = check([completed(), rejected_after_decline()], Timeouts())
    assert (checked, found) == (2, [])


def test_a_history_whose_commands_would_differ_is_reported_at_its_step() -> None:
    saga = rejected_after_decline()
    # as if an older version had sent a VoidPayment on the decline as well
    step = saga.history[2]
    void = step.commands[0].model_copy(update={"type": "VoidPayment", "step": "void"})
    changed = step.model_copy(update={"commands": (*step.commands, void)})
    history = (*saga.history[:2], changed, *saga.history[3:])
    divergence = replay(saga.model_copy(update={"history": history}), Timeouts())
    assert divergence is not None
    assert (divergence.step, divergence.message_type, divergence.detail) == (
        2,
        "PaymentDeclined",
        "different commands",
    )
    assert [t for t, _ in divergence.recorded] == ["ReleaseStock", "RejectOrder", "VoidPayment"]
    assert [t for t, _ in divergence.replayed] == ["ReleaseStock", "RejectOrder"]


def test_a_recorded_status_the_code_no_longer_reaches_is_reported() -> None:
    saga = completed()
    last = saga.history[-1].model_copy(update={"status": Status.RECEIPTING})
    divergence = replay(saga.model_copy(update={"history": (*saga.history[:-1], last)}), Timeouts())
    assert divergence is not None
    assert divergence.detail == "status receipting recorded, completed now"


def test_the_command_replays_a_file_and_fails_on_a_difference(tmp_path: Path) -> None:
    good, bad = completed(), rejected_after_decline()
    step = bad.history[2].model_copy(update={"commands": ()})
    bad = bad.model_copy(update={"history": (*bad.history[:2], step, *bad.history[3:])})
    path = tmp_path / "sagas.jsonl"
    path.write_text(good.model_dump_json() + "\n" + bad.model_dump_json() + "\n")
    command = [sys.executable, "-m", "services.orchestrator.replay", "--file", str(path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "2 sagas replayed, 1 differ"
    assert result.stdout.startswith(f"{ORDER} step 2 (PaymentDeclined): different commands")
