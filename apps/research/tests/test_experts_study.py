"""The experts study's split: the knee of a loss-per-level curve."""

from research.image.experts import knee


def test_knee_is_where_a_curve_turns_from_steep_to_flat():
    times = [i / 20 for i in range(21)]
    # falls fast until t = 0.3, then slowly: the bend is at 0.3
    losses = [1.0 - 3 * t if t <= 0.3 else 0.1 - 0.05 * (t - 0.3) for t in times]
    assert knee(times, losses) == 0.3


def test_knee_of_a_rising_curve_follows_the_turn_too():
    times = [i / 10 for i in range(11)]
    losses = [t if t <= 0.6 else 0.6 + 4 * (t - 0.6) for t in times]
    assert knee(times, losses) == 0.6
