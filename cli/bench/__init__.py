"""``praxis bench``: create, turn, load, scale and fan-out figures, each beside the raw
JetStream floor measured in the same run."""

from praxis.cli.bench.command import bench_app

__all__ = ["bench_app"]
