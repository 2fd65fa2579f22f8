"""The coalescing window widens while the process's timers fire late, within its cap, and narrows again."""

from conversations.replies.relay import FramePace


def test_the_window_is_the_base_while_timers_fire_on_time(settings):
    settings.CHAT_COALESCE_MS, settings.CHAT_COALESCE_MAX_MS = 40, 100
    pace = FramePace()
    for _ in range(50):
        pace.woke(0.0)
    assert pace.window() == 0.040


def test_late_timers_widen_the_window_up_to_the_cap_and_it_narrows_when_they_catch_up(settings):
    settings.CHAT_COALESCE_MS, settings.CHAT_COALESCE_MAX_MS = 40, 100
    pace = FramePace()
    pace.woke(0.015)
    assert 0.040 < pace.window() < 0.045  # one late wake moves it a little
    for _ in range(100):
        pace.woke(0.015)
    assert abs(pace.window() - 0.070) < 0.001  # base + twice the steady lateness
    for _ in range(100):
        pace.woke(0.5)  # far behind: fewer frames, but never past the cap
    assert pace.window() == 0.100
    for _ in range(200):
        pace.woke(0.0)
    assert pace.window() < 0.041


def test_a_cap_equal_to_the_base_keeps_the_window_fixed(settings):
    settings.CHAT_COALESCE_MS = settings.CHAT_COALESCE_MAX_MS = 40
    pace = FramePace()
    for _ in range(100):
        pace.woke(0.3)
    assert pace.window() == 0.040
