"""The benchmark's steps by name, in the order they run: the one list `bench.runner` runs
and `myoqa bench --steps` chooses among (apart from the bench package, so `--help` stays
light)."""

STEPS = ("cold", "warm", "chat", "embedding", "updates", "med_build", "scale")
