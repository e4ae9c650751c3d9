"""StepWatch tells a hung replica (a step that never returns) from a busy one."""

import pytest

from deployments.step_watch import StepWatch


def test_a_step_running_past_the_limit_fails_the_check():
    now = [100.0]
    watch = StepWatch(clock=lambda: now[0])
    watch.check(60)
    with watch.step():
        now[0] += 30
        with watch.step():
            now[0] += 20
            watch.check(60)
            assert watch.longest_running_s() == 50
            now[0] += 20
            with pytest.raises(RuntimeError, match="running for 70 s"):
                watch.check(60)
    assert watch.longest_running_s() == 0
    watch.check(60)
