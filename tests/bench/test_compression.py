"""B7's rule (bench/compression.py ``choose``): the compressed setting that saves the
most bytes within the memory and CPU bounds, else off; a CPU figure under the clock's
resolution never passes for "no extra CPU"."""

from __future__ import annotations

from bench.compression import Sample, choose


def _sample(setting: str, *, received: int, rss_kib: int, cpu_s: float) -> Sample:
    return Sample(
        setting=setting,
        connections=10,
        rss_before_kib=1000,
        rss_idle_kib=1000 + rss_kib * 10,
        idle_window=1.0,
        cpu_idle_seconds=0.0,
        deliveries=1000,
        cpu_rounds_seconds=cpu_s,
        rounds_seconds=1.0,
        bytes_received=received,
    )


def _samples(**figures: tuple[int, float]) -> dict[str, Sample]:
    """Per setting, (memory KiB per connection, CPU s); off, default and tuned receive
    500, 100 and 300 kB."""
    received = {"off": 500_000, "default": 100_000, "tuned": 300_000}
    return {
        name: _sample(name, received=received[name], rss_kib=rss, cpu_s=cpu)
        for name, (rss, cpu) in figures.items()
    }


def test_the_setting_saving_most_within_the_bounds_is_chosen() -> None:
    samples = _samples(off=(30, 0.05), default=(70, 0.06), tuned=(31, 0.051))
    chosen, reasons = choose(samples)
    assert chosen == "tuned"  # default saves more but costs too much memory
    assert reasons["tuned"]["bytes_saved"] == 0.4


def test_off_too_cheap_to_measure_is_not_a_division_by_zero() -> None:
    samples = _samples(off=(30, 0.0), default=(30, 0.25), tuned=(30, 0.0))
    chosen, reasons = choose(samples)
    assert reasons["default"]["extra_cpu"] is None  # unmeasurable: not eligible
    assert reasons["tuned"]["extra_cpu"] == 0.0
    assert chosen == "tuned"
