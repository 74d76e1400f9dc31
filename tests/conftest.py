"""What every test shares: hypothesis without its per-example deadline.

A deadline is a timed assertion: on a loaded machine (2 cores, a CI runner) an example such as
`-p 1-65535` may take longer than hypothesis's 200 ms and fail a test whose behaviour is right.
Speed is measured by the benchmarks under bench/, never asserted here."""

from hypothesis import settings

settings.register_profile("shoal", deadline=None)
settings.load_profile("shoal")
