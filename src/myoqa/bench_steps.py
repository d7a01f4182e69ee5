"""The benchmark's measurements by name, in the order `myoqa bench` runs them: the one list
bench runs from and the CLI's --steps accepts (apart from bench, so `--help` stays light)."""

STEPS = ("cold", "warm", "chat", "embedding", "updates", "med_build", "scale")
