"""The names of the models myoqa ships with, for the layers below the settings to share."""

DEFAULT_MODEL = "all-MiniLM-L6-v2"
