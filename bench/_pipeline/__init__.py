"""The parts of bench/pipeline.py that are its own and not the harness's: the documents its front
ends upload, the front ends, its helper processes (the inbox reader, the floor's hops), and its
report (JSON, plot, tables)."""
