"""cxr subcommands, one module each."""
