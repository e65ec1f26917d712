"""One module per outside system; their SDK/OS exceptions are translated here."""
