"""The terminal chat (`myoqa chat`): a Textual app over the same search API as `myoqa ask`."""
