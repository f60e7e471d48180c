"""The pipeline steps (run as `python -m flow_steps.<step>`) and their pure core."""
