"""The agents: one turn at a time (turns), the workflows built from turns, and the runner."""
