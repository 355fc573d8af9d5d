"""A host's one deadline (host_run.Deadline): what moves it, and what does not."""

from __future__ import annotations

from netjobs_core.host_run import BACKSTOP_S, KILL_CONFIRM_S, MIN_COLLECT_RATE, Deadline


def test_no_timeout_means_no_deadline_until_the_test_is_aborted():
    deadline = Deadline()
    assert deadline.due() is None
    deadline.file_started(now=4.0)
    deadline.file_data(now=5.0, size=1, most=None)  # a transfer does not invent a limit
    assert deadline.due() is None
    deadline.killed(now=100.0)
    assert deadline.due() == 100.0 + KILL_CONFIRM_S  # the data at 5 is long past


def test_the_backstop_moves_by_the_time_lost_to_resumed_cuts():
    deadline = Deadline(backstop=100.0)
    assert deadline.due() == 100.0
    deadline.reconnect_until = 120.0  # a cut: the agent's grace, then a backstop
    assert deadline.due() == 120.0 + BACKSTOP_S
    deadline.resumed(lost_s=7.0)
    assert deadline.reconnect_until is None
    assert deadline.due() == 107.0
    deadline.reconnect_until = 50.0  # a short cut within the backstop changes nothing
    assert deadline.due() == 107.0
    deadline.resumed(lost_s=3.0)
    assert deadline.due() == 110.0


def test_file_data_keeps_the_deadline_a_backstop_ahead_within_what_its_bytes_earn():
    deadline = Deadline(backstop=100.0)
    deadline.file_started(now=80.0)
    assert deadline.due() == 100.0  # no bytes yet
    deadline.file_data(now=90.0, size=10 * MIN_COLLECT_RATE, most=None)  # earns 10 s
    assert deadline.due() == 90.0 + BACKSTOP_S
    deadline.data_at = 10.0
    assert deadline.due() == 100.0
    deadline.data_at = 119.0  # bytes still coming: no later than what they earned
    assert deadline.due() == 80.0 + BACKSTOP_S + 10
    deadline.file_started(now=130.0)  # the next file does not start a backstop of its own
    assert deadline.due() == 100.0
    deadline.file_data(now=130.0, size=1, most=None)
    assert deadline.due() == 80.0 + BACKSTOP_S + 10 + 1 / MIN_COLLECT_RATE


def test_the_files_earn_at_most_the_hosts_bound_on_their_bytes():
    deadline = Deadline(backstop=0.0)
    deadline.file_started(now=0.0)
    for k in range(1, 100):  # endless bytes, over a bound of 5 s worth of them
        deadline.file_data(now=k, size=MIN_COLLECT_RATE, most=5 * MIN_COLLECT_RATE)
    deadline.data_at = 0.0
    assert deadline.due() == BACKSTOP_S


def test_cuts_move_the_deadline_by_the_grace_at_most_in_all():
    deadline = Deadline(backstop=100.0, max_shift_s=10.0)
    for _ in range(5):
        deadline.resumed(lost_s=6.0)
    assert deadline.due() == 110.0


def test_a_kill_replaces_the_backstop_and_forgets_earlier_cuts():
    deadline = Deadline(backstop=1000.0)
    deadline.resumed(lost_s=20.0)
    deadline.killed(now=200.0)
    assert deadline.due() == 200.0 + KILL_CONFIRM_S
    deadline.reconnect_until = 205.0  # a cut after the kill still gets its grace
    assert deadline.due() == 205.0 + BACKSTOP_S
    deadline.resumed(lost_s=4.0)
    assert deadline.due() == 200.0 + KILL_CONFIRM_S + 4.0
