"""Generated protobuf modules. Regenerate with ``make proto``; never edit by hand."""
