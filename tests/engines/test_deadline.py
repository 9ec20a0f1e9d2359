"""The deadline of a task: the floor until a speed is measured, then a multiple of its frames left."""

from restyle.engines.deadline import Deadlines, StallLimits


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_floor_holds_until_a_task_made_frames_then_its_frames_left_at_the_measured_speed():
    clock = Clock()
    deadlines = Deadlines(StallLimits(factor=10, floor_s=120, minimum_s=5), clock)
    deadlines.begin(0, units=100)
    clock.now = 119
    assert deadlines.stuck() == []  # loading its model, opening the input: the floor
    clock.now = 121
    [stall] = deadlines.stuck()
    assert stall.index == 0 and stall.expected_s is None and stall.limit_s == 120
    assert "made no progress for 121 s (no frames from it yet" in stall.reason("chunk 0", 2)

    deadlines.progress(0, 40)  # 0.1 s a frame (its first report counts its start too)
    assert deadlines.per_frame_s == 121 / 40
    deadlines.begin(1, units=100)
    for _ in range(50):  # another task at 0.1 s a frame
        clock.now += 0.1
        deadlines.progress(1, 1)
    assert abs(deadlines.per_frame_s - (121 + 5) / 90) < 1e-9
    clock.now += 60
    assert deadlines.stuck() == []  # task 0: 60 frames left at 1.4 s, x10; task 1: 50 frames left
    clock.now += 10 * 1.4 * 60
    assert [s.index for s in deadlines.stuck()] == [0, 1]


def test_the_limit_is_never_under_the_minimum_and_finished_tasks_are_not_watched():
    clock = Clock()
    deadlines = Deadlines(StallLimits(factor=10, floor_s=120, minimum_s=60), clock)
    deadlines.begin(0, units=10)
    clock.now = 0.1
    deadlines.progress(0, 9)  # 0.011 s a frame, one frame left: 0.11 s (x10) is under the 60 s minimum
    clock.now = 60
    assert deadlines.stuck() == []
    clock.now = 60.2
    [stall] = deadlines.stuck()
    assert stall.limit_s == 60
    assert stall.what("chunk 3") == (
        "chunk 3 made no progress for 60 s (expected ~0.011 s from the measured 0.011 s/frame)"
    )
    deadlines.finish(0)
    clock.now = 1000
    assert deadlines.stuck() == []


def test_a_retry_counts_only_the_frames_its_earlier_tries_did_not_report():
    clock = Clock()
    deadlines = Deadlines(StallLimits(), clock)
    deadlines.begin(0, units=10)
    assert deadlines.progress(0, 4) == 4
    deadlines.finish(0)  # its worker is killed
    deadlines.begin(0, units=10)  # the second try starts over
    assert [deadlines.progress(0, 3), deadlines.progress(0, 3)] == [0, 2]
    assert deadlines.finish(0, frames=10) == 4  # the result says 10: the frames the reports did not bring
    clock.now = 1000
    assert deadlines.stuck() == []  # finished: no clock
