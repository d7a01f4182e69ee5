"""Beyond one machine: a Milvus search backend and a Ray embedding job.

Everything here needs the optional `myoqa[scale]` extra (pymilvus, milvus-lite, ray) and is
imported only when a user asks for `--backend milvus` or `--embed-with ray`, so the default
install and a local `myoqa ask` never load it.
"""
