"""Step counting (train/steps.py): Every.crossed over a count that jumps by step blocks, and count_steps' lr.

Run: ``python -m pytest tests/test_steps.py -q``.
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from train.schedule import EpochDecay
from train.steps import Every, lr_at, set_step

pytestmark = pytest.mark.lightning


@given(n=st.integers(1, 20), start=st.integers(0, 50), jumps=st.lists(st.integers(0, 40), max_size=30))
def test_crossed_fires_once_per_multiple_passed(n, start, jumps):
    """Whatever the jumps (blocks of any length, a cut block of 0), each call answers whether a multiple of n lies
    in (previous count, count], so the calls that fire are exactly the ones that passed a multiple."""
    every, count = Every(n), start
    every.start(count)
    for jump in jumps:
        before, count = count, count + jump
        assert every.crossed(count) == any(m % n == 0 for m in range(before + 1, count + 1))


def test_before_any_start_the_first_call_answers_for_its_own_count():
    assert Every(10).crossed(10) and not Every(10).crossed(9)


def test_set_step_leaves_the_optimizer_as_that_many_scheduler_steps():
    params = [torch.nn.Parameter(torch.zeros(2))]
    stepped = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(params, lr=0.5), EpochDecay(0.9, 30, 7, "cs231n"))
    jumped = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(params, lr=0.5), EpochDecay(0.9, 30, 7, "cs231n"))
    for n in range(1, 40):
        stepped.optimizer.step()
        stepped.step()
        set_step(jumped, n)
        assert jumped.optimizer.param_groups[0]["lr"] == stepped.optimizer.param_groups[0]["lr"] == lr_at(jumped, n)
        assert (jumped.last_epoch, jumped.get_last_lr()) == (stepped.last_epoch, stepped.get_last_lr())
