"""`python -m streams.collector`: run the HTTP collector (what `journey up` starts)."""

from streams.collector.server import main

main()
